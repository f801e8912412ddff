"""The command-line programs, installed as console scripts by `pip install`.

  ofa-train            train (or resume) a supernet into a run directory     ofa_tf.cli.train
  ofa-evaluate         accuracy of subnets of a run                          ofa_tf.cli.evaluate
  ofa-train-predictor  the run's accuracy predictor                          ofa_tf.cli.train_predictor
  ofa-search           best subnet under each budget                         ofa_tf.cli.search
  ofa-export           one subnet as .tflite (+ .keras / SavedModel)         ofa_tf.cli.export
  ofa-benchmark-latency  .tflite latency on this machine or a phone          ofa_tf.cli.benchmark_latency
  ofa-build-lut        latency look-up table of a space                      ofa_tf.cli.build_lut
  ofa-profile          MACs / params of one subnet (no weights needed)       ofa_tf.cli.profile
  ofa-plot-pareto      Pareto plot and table of runs                         ofa_tf.cli.plot_pareto
  ofa-report           one HTML page of a run: plots, tables, exports        ofa_tf.cli.report
  ofa-check-data       decode every image of a dataset, list the bad ones    ofa_tf.cli.check_data
  ofa-import-ofa       an OFA PyTorch supernet as a run directory           ofa_tf.cli.import_ofa
  ofa-export-ofa       a run's supernet as OFA's PyTorch state dict          ofa_tf.cli.export_ofa
  ofa-finetune         one subnet of a run fine-tuned, as a run of its own    ofa_tf.cli.finetune

Each module has a `main()` (the console script) and runs as `python -m ofa_tf.cli.NAME`.
They all start through `ofa_tf.cli.startup` (flags parsed first, then quiet TensorFlow,
grouped `--help`, one-line errors with exit status 2); settings dataclasses become flags
through `ofa_tf.cli.config_flags`. Importing a command module defines no flags: `main()` does.

`--help` answers before TensorFlow loads: a command module imports, at its top, only modules
that import no TensorFlow (absl, `ofa_tf.cli`'s flag modules, the settings dataclasses and
choices: `ofa_tf.runs.config`, `ofa_tf.export.options`, `ofa_tf.choices`, `ofa_tf.search`,
`ofa_tf.spaces`), and imports the rest of the library inside the functions that run once
the flags parsed (`check_flags`, `_main`). Flag names follow one table,
`ofa_tf.cli.flag_names`: one name per idea across the programs.
Each command's `check_flags()` checks every flag's value (ranges, choices, combinations,
paths to read and to write; `ofa_tf.cli.flag_checks` and the library objects' own checks)
before any work; tests/test_bad_flags.py drives every flag with bad values of its type.
"""
