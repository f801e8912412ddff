"""`python -m tools.build_lut`: an alias of `ofa-build-lut` (ofa_tf/cli/build_lut.py), for a checkout."""

from ofa_tf.cli.build_lut import main

if __name__ == "__main__":
    main()
