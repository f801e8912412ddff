"""`python -m tools.finetune`: an alias of `ofa-finetune` (ofa_tf/cli/finetune.py), for a checkout."""

from ofa_tf.cli.finetune import main

if __name__ == "__main__":
    main()
