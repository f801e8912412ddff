"""The LiteRT interpreter of a `.tflite` model, as every part of ofa_tf creates it.

Conversion (`tflite.py`), int8 range fitting (`calibration.py`) and latency timing
(`ofa_tf.latency.host`) all run converted models through `make_interpreter`, so this
module sits below them and imports none of them. It uses the LiteRT interpreter
(`ai-edge-litert`): tflite-runtime breaks under numpy 2.
"""

from __future__ import annotations

from ofa_tf import io
from ofa_tf.errors import OfaError
from ofa_tf.native_logs import quiet_native_logs

# Interpreter op resolvers: XNNPACK (LiteRT's default on CPU), the built-in kernels without
# default delegates (faster for full-int8 on some x86 CPUs), the reference kernels.
OP_RESOLVERS = ("xnnpack", "builtin", "reference")
TFLITE_IDENTIFIER = b"TFL3"  # the flatbuffer file identifier, bytes 4..8 of every .tflite file


def check_tflite_file(path: str) -> None:
    """`path` is a file that starts like a TFLite model (read 8 bytes; nothing is loaded):
    a wrong file is named before any work, not by the interpreter after it."""
    if not io.isfile(path):
        raise OfaError(f"{path}: no such .tflite file" if not io.exists(path) else f"{path}: not a file")
    try:
        head = io.read_bytes(path)[:8] if io.is_url(path) else _head(path)
    except OSError as e:
        raise OfaError(f"{path}: cannot read ({e.strerror})") from None
    if head[4:8] != TFLITE_IDENTIFIER:
        raise OfaError(f"{path}: not a TFLite model (no {TFLITE_IDENTIFIER.decode()} identifier)")


def _head(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(8)


def make_interpreter(model: str | bytes, num_threads: int = 1, op_resolver: str = "xnnpack",
                     preserve_all_tensors: bool = False):
    """A LiteRT `Interpreter` for a `.tflite` path or bytes (tensors not yet allocated);
    `preserve_all_tensors` keeps intermediate tensors readable (not with XNNPACK)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    if op_resolver not in OP_RESOLVERS:
        raise OfaError(f"op_resolver={op_resolver!r}: expected one of {list(OP_RESOLVERS)}")
    resolver = {"xnnpack": OpResolverType.AUTO, "builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                "reference": OpResolverType.BUILTIN_REF}[op_resolver]
    source = {"model_content": model} if isinstance(model, bytes) else {"model_path": model}
    if isinstance(model, str):
        check_tflite_file(model)
        if io.is_url(model):  # the interpreter reads local files only
            source = {"model_content": io.read_bytes(model)}
    try:
        with quiet_native_logs():
            return Interpreter(**source, num_threads=num_threads, experimental_op_resolver_type=resolver,
                               experimental_preserve_all_tensors=preserve_all_tensors)
    except ValueError as e:
        name = model if isinstance(model, str) else "model bytes"
        raise OfaError(f"{name}: not a loadable TFLite model ({str(e).splitlines()[0][:120]})") from None
