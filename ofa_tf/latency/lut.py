"""Latency look-up tables: one table per input resolution, one entry per op configuration.

Following OFA, a subnet is cut into ops: the stem, every active inverted-
residual block and the head. An op's key holds everything its latency depends on (op
type, input HxWxC, output HxWxC, mid channels, kernel, stride, SE, identity skip,
activation), so blocks at different positions with equal keys share one entry. Each
entry holds count / mean / std (and median) in ms of timed runs of that op alone as a
small `.tflite` model (`ofa_tf.latency.ops`).

A subnet's raw estimate is the sum of its ops' medians (or means) minus the per-invocation overhead
that every stand-alone op model pays but a whole model pays once (`overhead_ms`, timed on
a model that does almost nothing). Ops timed alone still do not see exactly what they
see inside a whole model (cache contents, the delegate's per-model work), and on a CPU
with shared caches the sum is off by a roughly constant factor that depends on the
machine (measured here: x0.55 when ops are timed back-to-back, x1.2 round-robin). So a
table can carry a per-resolution `calibration`: a few whole subnets timed end to end
when the table is built, and the scale (median of measured / raw estimate) that
`predict_ms` applies. One scale keeps the ranking of the raw sums and removes their
systematic error; docs/deployment.md has the measured effect.

File format (JSON): {"format_version", "space" (SearchSpace config), "num_classes",
"device", "settings", "tables": {"32": {"overhead_ms": x, "ops": {key: {"count",
"mean", "std", "median"}}, "calibration" (optional): {"scale": {"mean": s, "median": s},
"archs": [arch dicts], "measured_ms": [...], "raw_ms": {"mean": [...], "median": [...]}}}}}
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from ofa_tf.errors import OfaError
from ofa_tf.io import isfile, read_json, write_json
from ofa_tf.spaces import Arch, SearchSpace
from ofa_tf.spaces.arch_plan import IMAGE_CHANNELS, plan

FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class OpSpec:
    """One op of a subnet: its key fields plus where in the supernet it can be built.

    `stage` / `index` locate a block with this configuration (any block with an equal key
    would do); they are not part of the key.
    """

    kind: str  # stem | block | final_expand | head
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    mid_channels: int = 0
    kernel: int = 0
    stride: int = 1
    se_channels: int = 0
    residual: bool = False
    activation: str = ""
    stage: int = -1
    index: int = -1

    @property
    def key(self) -> str:
        shape = lambda s: "x".join(str(v) for v in s)  # noqa: E731
        parts = [self.kind, f"in{shape(self.in_shape)}", f"out{shape(self.out_shape)}"]
        if self.kind == "block":
            parts += [f"mid{self.mid_channels}", f"k{self.kernel}", f"s{self.stride}", f"se{self.se_channels}",
                      f"skip{int(self.residual)}"]
        return "-".join(parts + [self.activation])


def op_specs(space: SearchSpace, arch: Arch, num_classes: int) -> list[OpSpec]:
    """The ops of `arch` in execution order (stem, blocks, final expand, head)."""
    p = plan(space, arch)
    ops = [OpSpec("stem", (arch.resolution, arch.resolution, IMAGE_CHANNELS), (p.stem_size, p.stem_size, p.stem_width),
                  activation=space.stem_activation)]
    for b in p.blocks:
        ops.append(OpSpec("block", (b.in_size, b.in_size, b.in_channels), (b.out_size, b.out_size, b.out_channels),
                          b.mid_channels, b.kernel_size, b.stride, b.se_channels, b.residual, b.activation, b.stage,
                          b.index))
    size, channels = p.feature_size, p.blocks[-1].out_channels
    if p.final_expand_width:
        ops.append(OpSpec("final_expand", (size, size, channels), (size, size, p.final_expand_width),
                          activation=space.head_activation))
        channels = p.final_expand_width
    ops.append(OpSpec("head", (size, size, channels), (1, 1, num_classes), mid_channels=p.head_width,
                      activation=space.head_activation))
    return ops


def distinct_op_specs(space: SearchSpace, resolution: int, num_classes: int) -> list[OpSpec]:
    """Every distinct op configuration of `space` at `resolution` (what a table must hold).

    Per stage: every kernel x expand (x depth, for spaces that couple them) choice at
    every input / output width; the stem for every stem width; final expand / head for
    every width.
    """
    specs: dict[str, OpSpec] = {}
    for arch in _covering_archs(space, resolution):
        for op in op_specs(space, arch, num_classes):
            specs.setdefault(op.key, op)
    return list(specs.values())


def _covering_archs(space: SearchSpace, resolution: int):
    """Archs that together use every op configuration: for each block slot, each stage
    width / previous width, kernel and expand combination is set on a max-depth arch.

    Within a stage, blocks after the first see the same shapes, so varying every slot's
    (kernel, expand) independently is enough; widths are varied per stage together with
    the previous stage's width (the input width of the stage's first block)."""
    base = space.max_arch(resolution)
    stages = space.stages
    for s, stage in enumerate(stages):
        prev_widths = stages[s - 1].widths if s > 0 else space.stem_widths
        for prev in prev_widths:
            for width in stage.widths:
                for kernel in stage.kernels:
                    for expand in stage.expands:
                        for depth in stage.depths:  # some spaces couple depth and expand
                            widths = list(base.widths)
                            widths[s] = width
                            stem = base.stem_width
                            if s > 0:
                                widths[s - 1] = prev
                            else:
                                stem = prev
                            kernels = [list(k) for k in base.kernels]
                            expands = [list(e) for e in base.expands]
                            depths = list(base.depths)
                            kernels[s], expands[s], depths[s] = [kernel] * depth, [expand] * depth, depth
                            yield from _valid(space, dict(base.to_dict(), widths=widths, stem_width=stem,
                                                          depths=depths, kernels=kernels, expands=expands))
    for head in space.head_widths or (0,):
        for width in stages[-1].widths:
            widths = list(base.widths)
            widths[-1] = width
            yield from _valid(space, dict(base.to_dict(), widths=widths, head_width=head))


def _valid(space: SearchSpace, data: Mapping[str, Any]):
    try:
        yield space.validate(Arch.from_dict(data))
    except OfaError:
        return  # a combination the space forbids (e.g. coupled kernel / expand choices)


class LatencyTable:
    """Per-resolution latency tables of one space (see the module docstring).

    Attributes:
      space_name: the space's name.
      resolutions: resolutions that have a table.
    """

    def __init__(self, space: SearchSpace, num_classes: int, tables: dict[int, dict[str, Any]],
                 device: str = "host", settings: Mapping[str, Any] | None = None):
        self.space = space
        self.num_classes = int(num_classes)
        self.tables = {int(r): t for r, t in tables.items()}
        self.device = device
        self.settings = dict(settings or {})

    @property
    def space_name(self) -> str:
        return self.space.name

    @property
    def resolutions(self) -> list[int]:
        return sorted(self.tables)

    # ------------------------------------------------------------------ estimates
    def predict_ms(self, arch: Arch, statistic: str = "median", calibrated: bool = True) -> float:
        """Estimated latency of `arch` in ms: the sum of its ops' medians at its resolution,
        less the per-invocation overhead counted once per op beyond the first, times the
        table's calibration scale for that resolution (when it has one and `calibrated`).

        Medians by default because latency benchmarks (ofa-benchmark-latency, Android's
        benchmark_model) report the median run, and on a shared machine a mean also counts
        the runs another process pre-empted; `statistic="mean"` sums op means instead.

        Raises:
          OfaError: the table has no entry for the resolution or for one of the ops.
        """
        scale = self.calibration_scale(arch.resolution, statistic) if calibrated else 1.0
        return scale * self._raw_ms(arch, statistic)

    def calibration_scale(self, resolution: int, statistic: str = "median") -> float:
        """The factor `predict_ms` applies at `resolution` (1.0 for an uncalibrated table)."""
        if statistic not in ("mean", "median"):
            raise OfaError(f"statistic={statistic!r}: expected mean or median")
        calibration = self._table(resolution).get("calibration")
        return float(calibration["scale"][statistic]) if calibration else 1.0

    def _raw_ms(self, arch: Arch, statistic: str) -> float:
        table = self._table(arch.resolution)
        ops = op_specs(self.space, arch, self.num_classes)
        total = 0.0
        for op in ops:
            entry = table["ops"].get(op.key)
            if entry is None:
                raise OfaError(f"latency table ({self.space_name}, resolution {arch.resolution}) has no entry "
                               f"for op {op.key}; rebuild it with ofa-build-lut for this space")
            total += entry[statistic]
        return total - (len(ops) - 1) * table.get("overhead_ms", 0.0)

    def breakdown(self, arch: Arch) -> list[tuple[str, float]]:
        """(op key, mean ms) of each op of `arch`, in order."""
        table = self._table(arch.resolution)
        return [(op.key, table["ops"].get(op.key, {}).get("mean", float("nan")))
                for op in op_specs(self.space, arch, self.num_classes)]

    def _table(self, resolution: int) -> dict[str, Any]:
        if resolution not in self.tables:
            raise OfaError(f"latency table ({self.space_name}) has no table for resolution {resolution}; "
                           f"it has {self.resolutions}")
        return self.tables[resolution]

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "space": self.space.to_config(), "num_classes": self.num_classes,
                "device": self.device, "settings": self.settings,
                "tables": {str(r): self.tables[r] for r in self.resolutions}}

    def save(self, path: str) -> None:
        """Writes the table atomically (temporary file, then rename)."""
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str) -> "LatencyTable":
        """Reads a table written by `save` / ofa-build-lut; OfaError when it is not one."""
        if not isfile(path):
            raise OfaError(f"latency table {path}: no such file")
        try:
            data = read_json(path)
            if data.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"format_version {data.get('format_version')!r}")
            space = SearchSpace.from_config(data["space"])
            tables = {int(r): t for r, t in data["tables"].items()}
            for t in tables.values():
                if not isinstance(t.get("ops"), dict):
                    raise ValueError("a table without ops")
                if "calibration" in t and not all(float(t["calibration"]["scale"][k]) > 0 for k in ("mean", "median")):
                    raise ValueError("a calibration scale that is not positive")
            return cls(space, data["num_classes"], tables, data.get("device", "host"), data.get("settings"))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise OfaError(f"latency table {path}: not a readable ofa_tf latency table ({str(e)[:120]})") from None
