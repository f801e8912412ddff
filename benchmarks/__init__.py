"""Speed and accuracy measurements that print JSON; each script's docstring says how to run it.

A package so that the scripts' shared helpers import as `benchmarks.common` (ahead of any
other `benchmarks` on the path), whether a script runs as `python benchmarks/NAME.py` or as
`python -m benchmarks.NAME`.
"""
