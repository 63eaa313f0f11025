"""BD-rate and BD-PSNR: the package's own figures, the sign convention, and clear refusals."""

from __future__ import annotations

import bjontegaard
import numpy as np
import pytest

from codeclab.report.bd import BDError, Curve, bd_quality, bd_rate

ANCHOR = Curve("anchor", [0.10, 0.20, 0.40, 0.80], [30.0, 33.1, 36.0, 38.7])


def scaled(factor: float, label: str = "test") -> Curve:
    """The anchor's curve with every rate multiplied by `factor`."""
    return Curve(label, [r * factor for r in ANCHOR.rates], list(ANCHOR.qualities))


def test_bd_rate_is_the_bjontegaard_packages_pchip_value() -> None:
    test = Curve("test", [0.09, 0.21, 0.35, 0.70], [30.4, 33.6, 36.1, 38.9])
    want = bjontegaard.bd_rate(ANCHOR.rates, ANCHOR.qualities, test.rates, test.qualities, method="pchip")
    assert bd_rate(ANCHOR, test) == pytest.approx(want, abs=1e-12)
    want_psnr = bjontegaard.bd_psnr(ANCHOR.rates, ANCHOR.qualities, test.rates, test.qualities, method="pchip")
    assert bd_quality(ANCHOR, test) == pytest.approx(want_psnr, abs=1e-12)


def test_fewer_bits_for_the_same_quality_is_a_negative_bd_rate() -> None:
    assert bd_rate(ANCHOR, scaled(0.8)) == pytest.approx(-20.0, abs=1e-9)
    assert bd_rate(ANCHOR, scaled(1.25)) == pytest.approx(25.0, abs=1e-9)
    assert bd_quality(ANCHOR, scaled(0.8)) > 0
    assert bd_rate(ANCHOR, ANCHOR) == pytest.approx(0.0, abs=1e-12)


def test_fewer_than_four_points_is_an_error_not_nan() -> None:
    three = Curve("three", ANCHOR.rates[:3], ANCHOR.qualities[:3])
    with pytest.raises(BDError, match="three: 3 rate points; a BD figure needs at least 4"):
        bd_rate(ANCHOR, three)


def test_curves_that_do_not_overlap_are_an_error_that_names_both_ranges() -> None:
    far = Curve("far", [1.0, 2.0, 4.0, 8.0], [45.0, 47.0, 49.0, 51.0])
    with pytest.raises(BDError, match=r"far \(quality 45\.\.51\) and anchor \(quality 30\.\.38\.7\) do not overlap"):
        bd_rate(ANCHOR, far)


@pytest.mark.parametrize(
    ("rates", "qualities", "message"),
    [
        ([0.1, 0.2, 0.0, 0.8], [30, 31, 32, 33], "every rate must be positive"),
        ([0.1, 0.2, 0.4, 0.4], [30, 31, 32, 33], "two rate points coincide"),
        ([0.1, 0.2, 0.4], [30, 31, 32, 33], "3 rates but 4 quality values"),
    ],
)
def test_malformed_curves_are_refused(rates: list[float], qualities: list[float], message: str) -> None:
    with pytest.raises(BDError, match=message):
        bd_rate(ANCHOR, Curve("bad", rates, qualities))


def test_the_result_is_a_finite_float() -> None:
    value = bd_rate(ANCHOR, scaled(0.5))
    assert isinstance(value, float) and np.isfinite(value)
