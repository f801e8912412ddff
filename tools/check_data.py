"""`python -m tools.check_data`: an alias of `ofa-check-data` (ofa_tf/cli/check_data.py), for a checkout."""

from ofa_tf.cli.check_data import main

if __name__ == "__main__":
    main()
