"""Bjøntegaard deltas with PCHIP interpolation, through the `bjontegaard` package.

Sign convention (the package's, and the literature's): a negative BD-rate means the test
codec needs fewer bits than the anchor for the same quality; a positive BD-PSNR means it
reaches a higher quality at the same rate. Inputs the package would answer with NaN or a
warning (too few points, curves that do not overlap) raise BDError instead, and so do inputs
whose figure would mislead: a curve whose quality does not rise with its rate, or two curves
that overlap in less than MIN_OVERLAP of the shorter one's range on the axis integrated over.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import bjontegaard

METHOD = "pchip"
MIN_POINTS = 4
# Of the shorter curve's range on the integration axis (quality for BD-rate, log10 rate for BD-quality):
# a delta integrated over less than half of either curve extrapolates more than it measures.
MIN_OVERLAP = 0.5


class BDError(ValueError):
    """The curves cannot give a meaningful Bjøntegaard delta; the message says why."""


@dataclass(frozen=True)
class Curve:
    """Rate (e.g. bpp or kbps) against one quality metric, one entry per rate point."""

    label: str
    rates: Sequence[float]
    qualities: Sequence[float]


def bd_rate(anchor: Curve, test: Curve) -> float:
    """Average rate difference in percent at equal quality, over the overlapping quality range."""
    return _delta(bjontegaard.bd_rate, anchor, test, "quality")


def bd_quality(anchor: Curve, test: Curve) -> float:
    """Average quality difference (in the metric's unit, e.g. dB) at equal rate."""
    return _delta(bjontegaard.bd_psnr, anchor, test, "rate")


def _delta(function: object, anchor: Curve, test: Curve, axis: str) -> float:
    for curve in (anchor, test):
        _check(curve)
    _check_overlap(anchor, test, axis)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the package warns, then returns NaN, on unusable curves
        try:
            value = function(  # type: ignore[operator]
                anchor.rates, anchor.qualities, test.rates, test.qualities, METHOD,
                require_matching_points=False, min_overlap=0,
            )  # fmt: skip
        except (RuntimeWarning, UserWarning, ValueError) as exc:
            raise BDError(f"{test.label} against {anchor.label}: {exc}") from None
    if not math.isfinite(value):
        raise BDError(f"{test.label} against {anchor.label}: the delta is not finite")
    return float(value)


def _check(curve: Curve) -> None:
    if len(curve.rates) != len(curve.qualities):
        raise BDError(f"{curve.label}: {len(curve.rates)} rates but {len(curve.qualities)} quality values")
    if len(curve.rates) < MIN_POINTS:
        raise BDError(f"{curve.label}: {len(curve.rates)} rate points; a BD figure needs at least {MIN_POINTS}")
    if any(r <= 0 or not math.isfinite(r) for r in curve.rates):
        raise BDError(f"{curve.label}: every rate must be positive and finite, got {list(curve.rates)}")
    if len(set(curve.qualities)) != len(curve.qualities) or len(set(curve.rates)) != len(curve.rates):
        raise BDError(f"{curve.label}: two rate points coincide; each point must differ in rate and quality")
    by_rate = sorted(zip(curve.rates, curve.qualities, strict=True))
    for (rate, quality), (next_rate, next_quality) in itertools.pairwise(by_rate):
        if next_quality < quality:
            raise BDError(
                f"{curve.label}: not monotonic: quality {quality:.4g} at rate {rate:.4g} but {next_quality:.4g} "
                f"at {next_rate:.4g}; a BD figure needs quality that rises with rate"
            )


def _check_overlap(anchor: Curve, test: Curve, axis: str) -> None:
    def span(curve: Curve) -> tuple[float, float]:
        values = curve.qualities if axis == "quality" else curve.rates
        return min(values), max(values)

    (a_lo, a_hi), (t_lo, t_hi) = span(anchor), span(test)
    ranges = f"{test.label} ({axis} {t_lo:.4g}..{t_hi:.4g}) and {anchor.label} ({axis} {a_lo:.4g}..{a_hi:.4g})"
    advice = "choose rate points that cover a common range"
    if min(a_hi, t_hi) <= max(a_lo, t_lo):
        raise BDError(f"{ranges} do not overlap in {axis}; {advice}")
    overlap = _overlap_fraction((a_lo, a_hi), (t_lo, t_hi), log=axis == "rate")
    if overlap < MIN_OVERLAP:
        raise BDError(
            f"{ranges} overlap in only {overlap:.0%} of the shorter {axis} range; a BD figure needs "
            f"{MIN_OVERLAP:.0%}: {advice}"
        )


def _overlap_fraction(first: tuple[float, float], second: tuple[float, float], log: bool) -> float:
    """The common part of two ranges over the shorter one, on the scale the package integrates over."""
    (a_lo, a_hi), (b_lo, b_hi) = (tuple(map(math.log10, r)) if log else r for r in (first, second))
    shorter = min(a_hi - a_lo, b_hi - b_lo)
    return (min(a_hi, b_hi) - max(a_lo, b_lo)) / shorter
