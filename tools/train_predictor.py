"""`python -m tools.train_predictor`: an alias of `ofa-train-predictor` (ofa_tf/cli/train_predictor.py), for a checkout."""

from ofa_tf.cli.train_predictor import main

if __name__ == "__main__":
    main()
