"""`Arch`: one subnet of a search space, as a small immutable, JSON-serialisable value.

An arch lists, for every stage of its space, the stage's output width, its depth (how
many of the stage's blocks run) and the kernel size and expand ratio of each *active*
block only (so there are no meaningless entries for skipped blocks), plus the input
resolution and the stem / head widths. Validation against a space lives in
`SearchSpace.validate`; this module only knows the shape of the value.

Arch JSON comes from users (`--arch=FILE`, `--archs=FILE`, search results), so reading it
fails with one `OfaError` naming the file and the field however the text is odd: not JSON,
nested too deeply for the parser, a number too long to convert, NaN or 1e400 (infinity), an
integer beyond any width or size (`MAX_ARCH_INT`), a value of the wrong type.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Mapping

from ofa_tf.errors import OfaError, error_text
from ofa_tf.io import read_text
from ofa_tf.values import is_finite_number, shown

_FIELDS = ("resolution", "stem_width", "widths", "depths", "kernels", "expands", "head_width")
MAX_ARCH_INT = 2 ** 31 - 1  # no width, depth, kernel or resolution is larger (TensorFlow's shapes are int32)


@dataclasses.dataclass(frozen=True)
class Arch:
    """One subnet: per-stage width/depth, per-active-block kernel/expand, resolution.

    Attributes:
      resolution: input image side in pixels.
      stem_width: output channels of the stem convolution.
      widths: output channels of each stage.
      depths: number of blocks that run in each stage (the first `depth` blocks).
      kernels: per stage, the depthwise kernel size of each active block.
      expands: per stage, the expand ratio of each active block.
      head_width: channels of the post-pooling head convolution (0 if the space has none).
    """

    resolution: int
    stem_width: int
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    kernels: tuple[tuple[int, ...], ...]
    expands: tuple[tuple[float, ...], ...]
    head_width: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A plain dict of lists and numbers (what `to_json` writes)."""
        return {
            "resolution": self.resolution,
            "stem_width": self.stem_width,
            "widths": list(self.widths),
            "depths": list(self.depths),
            "kernels": [list(k) for k in self.kernels],
            "expands": [list(e) for e in self.expands],
            "head_width": self.head_width,
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Arch":
        """Builds an arch from a dict, checking only types and shapes (not the space).

        Raises:
          OfaError: naming the first malformed field.
        """
        if isinstance(data, Arch):
            return data
        if not isinstance(data, Mapping):
            raise OfaError(f"arch: expected a JSON object / dict, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_FIELDS), key=str)
        if unknown:
            raise OfaError(f"arch: unknown field {shown(unknown[0])}; expected fields {list(_FIELDS)}")
        missing = [f for f in ("resolution", "depths", "kernels", "expands") if f not in data]
        if missing:
            raise OfaError(f"arch: missing field {missing[0]!r}")

        def as_int(name: str, value: Any) -> int:
            integral = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)
                                                  and value.is_integer())
            if isinstance(value, bool) or not integral:
                raise OfaError(f"arch.{name}={shown(value)}: expected an integer")
            if abs(value) > MAX_ARCH_INT:
                raise OfaError(f"arch.{name}={shown(value)}: expected an integer of at most {MAX_ARCH_INT}")
            return int(value)

        def as_float(name: str, value: Any) -> float:
            if not is_finite_number(value):
                raise OfaError(f"arch.{name}={shown(value)}: expected a finite number")
            return float(value)

        def as_list(name: str, value: Any) -> list:
            if not isinstance(value, (list, tuple)):
                raise OfaError(f"arch.{name}={shown(value)}: expected a list")
            return list(value)

        depths = tuple(as_int(f"depths[{i}]", d) for i, d in enumerate(as_list("depths", data["depths"])))
        kernels = tuple(
            tuple(as_int(f"kernels[{i}][{j}]", k) for j, k in enumerate(as_list(f"kernels[{i}]", ks)))
            for i, ks in enumerate(as_list("kernels", data["kernels"])))
        expands = tuple(
            tuple(as_float(f"expands[{i}][{j}]", e) for j, e in enumerate(as_list(f"expands[{i}]", es)))
            for i, es in enumerate(as_list("expands", data["expands"])))
        widths = tuple(as_int(f"widths[{i}]", w) for i, w in enumerate(as_list("widths", data.get("widths", []))))
        return cls(
            resolution=as_int("resolution", data["resolution"]),
            stem_width=as_int("stem_width", data.get("stem_width", 0)),
            widths=widths,
            depths=depths,
            kernels=kernels,
            expands=expands,
            head_width=as_int("head_width", data.get("head_width", 0)),
        )

    @classmethod
    def from_json(cls, text: str) -> "Arch":
        return cls.from_dict(parse_json(text, "arch"))


def parse_json(text: str, source: str) -> Any:
    """`text` parsed as JSON; every way it fails is one OfaError naming `source` (what the
    text is: `arch`, `arch file 'F'`). NaN and infinities parse (as Python's json reads
    them); the fields that hold them reject them, by name."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise OfaError(f"{source}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise OfaError(f"{source}: not valid JSON for an arch (nested too deeply)") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise OfaError(f"{source}: not valid JSON for an arch ({error_text(e, 80)})") from None


def read_arch_json(path: str) -> Any:
    """The JSON value of the arch file `path`: the arch (ofa_tf's or OFA's dict), or a search
    result's "arch"; an unreadable file is one OfaError naming it."""
    source = f"arch file {path!r}"
    try:
        text = read_text(path)
    except OSError as e:
        raise OfaError(f"{source}: cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise OfaError(f"{source}: not a text (UTF-8) file") from None
    data = parse_json(text, source)
    return data["arch"] if isinstance(data, Mapping) and "arch" in data else data

