"""`python -m tools.export_ofa`: an alias of `ofa-export-ofa` (ofa_tf/cli/export_ofa.py), for a checkout."""

from ofa_tf.cli.export_ofa import main

if __name__ == "__main__":
    main()
