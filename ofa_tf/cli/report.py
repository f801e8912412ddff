"""ofa-report: one self-contained HTML page of everything a run directory holds.

  ofa-report --model_dir=runs/demo
  ofa-report --model_dir=runs/mine --latency_lut=luts/mine_host.json --output=reports/mine.html

Reads what the programs left in --model_dir and writes one HTML file (default
MODEL_DIR/report.html) with: the run's settings; training curves and the per-epoch table
(metrics.csv); the subnets ofa-evaluate measured (evaluation.json); each ofa-search result
set (any folder of the run with an ofa-search summary.json) with the subnet per target
against the min subnet measured on the same images, and the Pareto front of the subnets the
run measured with the searched ones over it; the accuracy predictor's rank correlation,
warnings and predicted-vs-measured plot (predictor/); a latency table's predicted-vs-measured
plot (benchmarks/lut_accuracy.py's output: RUN/lut_accuracy.json or --lut_accuracy); and the
exported models (NAME.json beside NAME.tflite) with size, accuracy and the latency
ofa-benchmark-latency measured (its --output JSON anywhere in the run).

The page needs no network: the images are embedded (base64 PNG), the styles inline. A
section whose files are missing says which program writes them. Every file is read and
checked before the page is written (an unreadable one is a one-line error), and the page
is written atomically.
"""

from __future__ import annotations

from ofa_tf.cli import startup  # first: takes the signals from the program's start

import os  # noqa: E402

from absl import flags  # noqa: E402

from ofa_tf.cli import flag_checks  # noqa: E402
from ofa_tf.cli.config_flags import FLAGS, definer  # noqa: E402
from ofa_tf.errors import OfaError  # noqa: E402
from ofa_tf.search import CostModels
from ofa_tf.search.encoding import space_fingerprint  # noqa: E402 (no TensorFlow: ofa_tf/search)

PROGRAM = "ofa-report"
REPORT_FILE = "report.html"


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    add = definer(flag_values)
    add("string", "model_dir", None, "Run directory written by ofa-train (and the other programs).", "run")
    add("string", "output", None, f"The HTML file to write (default: MODEL_DIR/{REPORT_FILE}).", "run")
    add("string", "latency_lut", None, "Latency look-up table (ofa-build-lut): also draws the Pareto front on "
        "latency, each subnet's from the table.", "report", path="input")
    add("string", "lut_accuracy", None, "benchmarks/lut_accuracy.py's JSON output, for the latency table's "
        "predicted-vs-measured plot (default: MODEL_DIR/lut_accuracy.json when there).", "report", path="input")
    add("string", "title", None, "Page title (default: the run directory's name).", "report")


def check_flags():
    """Every flag checked before any work: the run (its config.json), the output file, the
    latency table (read, and of the run's space) and the latency check file (read). Returns
    (RunInfo, latency cost models or None, output path)."""
    from ofa_tf.latency.lut import LatencyTable
    from ofa_tf.report.page import RunInfo
    from ofa_tf.report.run_files import lut_accuracy_pairs
    from ofa_tf.runs import RunDirectory

    flag_checks.required("model_dir", FLAGS.model_dir, "the run directory to report on")
    saved = RunDirectory(FLAGS.model_dir).read()
    output = FLAGS.output or os.path.join(FLAGS.model_dir, REPORT_FILE)
    flag_checks.output_file("output", output)
    flag_checks.input_path("latency_lut", FLAGS.latency_lut)
    flag_checks.input_path("lut_accuracy", FLAGS.lut_accuracy)
    latency_costs = None
    if FLAGS.latency_lut:
        table = LatencyTable.load(FLAGS.latency_lut)
        space = saved.space
        if space_fingerprint(table.space.with_resolutions(space.resolutions)) != space_fingerprint(space):
            raise OfaError(f"--latency_lut={FLAGS.latency_lut}: table is for another space ({table.space_name!r}) "
                           f"than the run's {space.name!r}")
        latency_costs = CostModels(space, saved.num_classes, table)
    if FLAGS.lut_accuracy:
        lut_accuracy_pairs(FLAGS.lut_accuracy)  # its one-line error now, before any work
    run = RunInfo(FLAGS.model_dir, saved.space, saved.num_classes, saved.config.to_dict(), saved.config.method)
    return run, latency_costs, output


def _main(argv: list[str]) -> None:
    from ofa_tf.io import write_text
    from ofa_tf.report.page import build_report

    run, latency_costs, output = check_flags()
    page = build_report(run, latency_costs, FLAGS.lut_accuracy, FLAGS.title)
    write_text(output, page)
    print(f"wrote {output} ({len(page.encode()) / 1e6:.2f} MB, no network needed to open it)")


def main() -> None:
    """The `ofa-report` console script."""
    define_flags()
    startup.run(_main, program=PROGRAM, doc=__doc__)


if __name__ == "__main__":
    main()
