"""What a run shows a person: its figures (`plots`), the files its programs left, read and
checked (`run_files`), and the one-page HTML report of a run (`page`, `ofa-report`).

Names load on first use (`ofa_tf.lazy`): the file readers come without matplotlib or
TensorFlow, so a program can import its file names before its flags are parsed."""

from ofa_tf.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "ofa_tf.report.page": ("RunInfo", "build_report"),
    "ofa_tf.report.plots": ("pareto_png", "predicted_vs_measured_png", "training_curves_png"),
    "ofa_tf.report.run_files": ("SearchResults", "exports", "read_search_folder", "search_folders"),
})
