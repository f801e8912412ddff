"""Channel rounding shared by every space and layer (MobileNet's `make_divisible`)."""

from __future__ import annotations


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Rounds `value` to a multiple of `divisor`, never going down by more than 10%.

    This is the rule MobileNetV2/V3 and OFA use for every channel count, so subnet
    widths (and hence MACs) match the reference implementation exactly.
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)


def expanded_channels(in_channels: int, expand_ratio: float) -> int:
    """Mid (expanded) channels of an inverted-residual block, as OFA computes them."""
    return make_divisible(round(in_channels * expand_ratio), 8)


def squeeze_channels(channels: int, reduction: int = 4) -> int:
    """Hidden channels of a squeeze-excite module over `channels` inputs."""
    return make_divisible(channels // reduction, 8)
