"""`python -m tools.profile`: an alias of `ofa-profile` (ofa_tf/cli/profile.py), for a checkout."""

from ofa_tf.cli.profile import main

if __name__ == "__main__":
    main()
