"""`python -m tools.train`: an alias of `ofa-train` (ofa_tf/cli/train.py), for a checkout."""

from ofa_tf.cli.train import main

if __name__ == "__main__":
    main()
