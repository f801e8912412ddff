"""`python -m tools.benchmark_latency`: an alias of `ofa-benchmark-latency` (ofa_tf/cli/benchmark_latency.py), for a checkout."""

from ofa_tf.cli.benchmark_latency import main

if __name__ == "__main__":
    main()
