"""absl flag definitions shared by the command-line tools, grouped by concern.

Each `define_*()` adds one group of flags (idempotent, so tools can combine groups);
`--helpfull` lists them under the module that defined them.
"""
