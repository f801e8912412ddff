"""Packages whose exported names load on first use (PEP 562).

A package whose `__init__` imported every module would make each of its light modules
(a settings dataclass, a list of choices) cost TensorFlow's import: importing
`ofa_tf.runs.config` runs `ofa_tf/runs/__init__.py` first. The command-line programs define
their flags from such light modules and answer `--help` before TensorFlow loads, so these
packages name, in one table, the module each exported name comes from:

    __all__, __getattr__, __dir__ = lazy_exports(__name__, {
        "ofa_tf.runs.config": ("RESUMABLE_CHANGES", "RunConfig"),
        "ofa_tf.runs.directory": ("RunDirectory", ...),
    })

`from ofa_tf.runs import RunConfig` imports `ofa_tf.runs.config` (and what it imports) and
nothing else. tests/test_structure.py reads the same table as the package's re-exports.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Callable, Mapping, Sequence


class _LazyPackage(types.ModuleType):
    """A package module whose exported names win over its submodules' names: importing the
    submodule `ofa_tf.runs.train` sets the package's attribute `train` to that module
    (Python's import system does), which would hide the function `train` the package
    exports; that assignment is ignored here, as an eager `__init__`'s import would have
    overwritten it."""

    _lazy_names: frozenset[str] = frozenset()

    def __setattr__(self, name: str, value: object) -> None:
        if (name in self._lazy_names and isinstance(value, types.ModuleType)
                and value.__name__ == f"{self.__name__}.{name}"):
            return
        super().__setattr__(name, value)


def lazy_exports(package: str, exports: Mapping[str, Sequence[str]]
                 ) -> tuple[list[str], Callable[[str], object], Callable[[], list[str]]]:
    """(`__all__`, `__getattr__`, `__dir__`) of the package `package`, which exports the
    names `exports[module]` of each of its modules, each imported when first used."""
    where = {name: module for module, names in exports.items() for name in names}
    module = sys.modules[package]
    module.__class__ = type("LazyPackage", (_LazyPackage,), {"_lazy_names": frozenset(where)})

    def __getattr__(name: str) -> object:
        source = where.get(name)
        if source is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source), name)
        types.ModuleType.__setattr__(module, name, value)  # once: later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(where))

    return list(where), __getattr__, __dir__
