"""`python -m tools.import_ofa`: an alias of `ofa-import-ofa` (ofa_tf/cli/import_ofa.py), for a checkout."""

from ofa_tf.cli.import_ofa import main

if __name__ == "__main__":
    main()
