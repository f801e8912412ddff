"""`python -m tools.plot_pareto`: an alias of `ofa-plot-pareto` (ofa_tf/cli/plot_pareto.py), for a checkout."""

from ofa_tf.cli.plot_pareto import main

if __name__ == "__main__":
    main()
