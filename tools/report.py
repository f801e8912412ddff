"""`python -m tools.report`: an alias of `ofa-report` (ofa_tf/cli/report.py), for a checkout."""

from ofa_tf.cli.report import main

if __name__ == "__main__":
    main()
