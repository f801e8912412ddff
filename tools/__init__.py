"""Aliases of the console scripts for a checkout: `python -m tools.NAME` runs `ofa_tf.cli.NAME`
(`tools.export_tflite` is `ofa-export`). The programs themselves live in `ofa_tf/cli/`."""
