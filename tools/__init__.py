"""absl command-line programs; run them from the repository root as `python -m tools.NAME`."""
