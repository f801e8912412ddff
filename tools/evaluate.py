"""`python -m tools.evaluate`: an alias of `ofa-evaluate` (ofa_tf/cli/evaluate.py), for a checkout."""

from ofa_tf.cli.evaluate import main

if __name__ == "__main__":
    main()
