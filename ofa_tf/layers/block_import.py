"""A user's elastic block named by its Python import path (`MODULE:CLASS`), as a run records it.

A Keras user subclasses `ElasticInvertedResidual` in a module of their own. In Python they
pass the class (`Supernet(..., block_class=GeluBlock)`); on the command line and in a run's
config.json the class is named by where it lives, `my_blocks:GeluBlock`, and every tool that
rebuilds the run's supernet imports it from there. The variables of a block with another
activation have the shapes of the default block's, so a block that fell back to the default
would load every checkpoint silently and compute another network: any failure to find the
class is therefore an error naming the module and the class, never the default block.

The module is imported as Python imports it (installed, or on `PYTHONPATH`), and also from
the current directory, as `python -m` would: a console script (`ofa-train`) does not put the
current directory on `sys.path` by itself.
"""

from __future__ import annotations

import importlib
import os
import re
import sys

import keras

from ofa_tf.errors import OfaError, error_text
from ofa_tf.layers.block import ElasticInvertedResidual

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_SPEC = re.compile(rf"^({_IDENTIFIER}(?:\.{_IDENTIFIER})*):({_IDENTIFIER})$")


def block_spec(block_class: type) -> str:
    """The import path `MODULE:CLASS` of a block class (what `import_block_class` reads)."""
    return f"{block_class.__module__}:{block_class.__qualname__}"


def import_block_class(spec: str | None) -> type:
    """The block class that `spec` (`MODULE:CLASS`) names; None: `ElasticInvertedResidual`.

    The module is imported (from the current directory too), the class must subclass
    `ElasticInvertedResidual` and be registered with Keras serialization
    (`@keras.saving.register_keras_serializable`), as a supernet's config and `.keras` files
    name their block by its registered name.

    Raises:
      OfaError: `block_class=SPEC: ...` naming the module or the class and what is wrong (the
        spec is malformed, the module does not import, it has no such class, the class is not
        an elastic block or not registered).
    """
    if spec is None:
        return ElasticInvertedResidual
    match = _SPEC.match(spec) if isinstance(spec, str) else None
    if match is None:
        raise OfaError(f"block_class={spec}: expected MODULE:CLASS, a Python import path such as my_blocks:GeluBlock")
    module_name, class_name = match.groups()
    module = _import_module(spec, module_name)
    found = getattr(module, class_name, None)
    if found is None:
        raise OfaError(f"block_class={spec}: module {module_name} ({_where(module)}) has no class {class_name}")
    if not (isinstance(found, type) and issubclass(found, ElasticInvertedResidual)):
        raise OfaError(f"block_class={spec}: {class_name} is not a subclass of ofa_tf.layers.ElasticInvertedResidual")
    if not _registered(found):
        raise OfaError(f"block_class={spec}: {class_name} is not registered with Keras serialization (decorate it "
                       "with @keras.saving.register_keras_serializable(package=...))")
    return found


def _import_module(spec: str, module_name: str):
    """`module_name` imported, the current directory on `sys.path` while it imports (once
    imported, `sys.modules` keeps it). Any failure of the user's module (not found, a syntax
    error, an exception at its top level) is one OfaError naming it."""
    cwd = os.getcwd()
    added = "" not in sys.path and cwd not in sys.path
    if added:
        sys.path.append(cwd)
    try:
        return importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - whatever the user's module raises while it imports
        raise OfaError(f"block_class={spec}: module {module_name} does not import ({type(e).__name__}: "
                       f"{error_text(e, 120)}); it must be installed, on PYTHONPATH or in the current "
                       "directory") from None
    finally:
        if added:
            sys.path.remove(cwd)


def _where(module) -> str:
    path = getattr(module, "__file__", None)
    return path if path else "a namespace package"


def _registered(cls: type) -> bool:
    """Whether `cls` is registered with Keras serialization (under a `package>name` key)."""
    name = keras.saving.get_registered_name(cls)
    return keras.saving.get_registered_object(name) is not None and ">" in name


__all__ = ["block_spec", "import_block_class"]
