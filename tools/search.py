"""`python -m tools.search`: an alias of `ofa-search` (ofa_tf/cli/search.py), for a checkout."""

from ofa_tf.cli.search import main

if __name__ == "__main__":
    main()
