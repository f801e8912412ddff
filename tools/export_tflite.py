"""`python -m tools.export_tflite`: an alias of `ofa-export` (ofa_tf/cli/export.py), for a checkout."""

from ofa_tf.cli.export import main

if __name__ == "__main__":
    main()
