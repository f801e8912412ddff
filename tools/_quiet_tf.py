"""Imports TensorFlow and starts its runtime with the start-up chatter silenced (import
this first in a tool). See tools/_tf_startup.py; `tools.train` uses that module directly
because a multi-worker strategy must be created before the first op."""

from tools._tf_startup import start_runtime

start_runtime()
