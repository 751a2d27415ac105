"""Is an input believable? Its range against the training statistics and physical bounds.

A model has seen each input variable with a mean and standard deviation (its normalizer,
in the model's units). A value ``k`` standard deviations away, with ``k`` above
:data:`MAX_SIGMA` (50), is not weather the model knows: usually a fill value (``1e30``), a
unit mistake (``hPa`` labelled ``Pa``) or a corrupted file. Physical bounds catch the
unit mistakes the statistics cannot, e.g. Kelvin numbers labelled ``degC`` (554 K after
conversion, only about 27 standard deviations of a 2 m temperature from its mean).

Physical bounds, checked in the model's units when the variable's quantity is known from
its units (pint dimensionality):

=====================  ===================  ============================================
quantity               bounds               applies when
=====================  ===================  ============================================
absolute temperature   150 K to 360 K       temperature units and a training mean within
                                            those bounds (anomalies are not bounded)
speed / velocity       -200 to 200 m s-1    length per time (winds; precipitation rates
                                            stay far inside)
=====================  ===================  ============================================

Every check names the variable, the range found, the range expected and, where one
explains it, the likely mistake (an offset of 273.15, a factor of 10**k, 3600 or 86400).
``check_plausibility=False`` (``--no-plausibility-check``) skips these checks for the
expert who knows the values are right; NaN/inf are always refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from xcorrdiff.data.transforms import TRANSFORMS

__all__ = ["MAX_SIGMA", "ExpectedRange", "expected_ranges"]

#: Distance from the training mean, in training standard deviations, beyond which an input
#: is refused.
MAX_SIGMA = 50.0

# (quantity, pint dimensionality, bounds in SI, SI units, gated by the training mean)
_PHYSICAL: tuple[tuple[str, dict[str, float], tuple[float, float], str, bool], ...] = (
    ("an absolute temperature", {"[temperature]": 1.0}, (150.0, 360.0), "K", True),
    ("a speed", {"[length]": 1.0, "[time]": -1.0}, (-200.0, 200.0), "m s-1", False),
)


def _transform(value: float, kind: str) -> float:
    """``value`` through the transform ``kind``; itself where it lies outside its domain."""
    with np.errstate(invalid="ignore", divide="ignore"):
        out = float(TRANSFORMS[kind].forward(np.float64(value)))
    return out if math.isfinite(out) else value


@dataclass(frozen=True)
class ExpectedRange:
    """What a model expects of one input variable, in the model's units.

    Parameters
    ----------
    name, units : str
        The variable and the model's units for it.
    mean, std : float
        Training statistics (of the transformed variable for ``transform="log1p"``).
    transform : str
        ``"none"`` or ``"log1p"``.
    physical : (float, float) or None
        Physical bounds in the model's units, or None where none apply.
    quantity : str
        What the physical bounds are of (for messages).
    """

    name: str
    units: str
    mean: float
    std: float
    transform: str = "none"
    physical: tuple[float, float] | None = None
    quantity: str = ""

    def sigmas(self, value: float) -> float:
        """Distance of ``value`` from the training mean, in standard deviations."""
        return abs(_transform(value, self.transform) - self.mean) / self.std

    def problem(self, low: float, high: float) -> str | None:
        """Why values in ``[low, high]`` are not believable, or None when they are."""
        units = f" {self.units}" if self.units else ""
        found = f"values from {low:.6g} to {high:.6g}{units}"
        if self.physical is not None:
            lo, hi = self.physical
            if low < lo or high > hi:
                hint = _likely_mistake(low, high, lo, hi)
                return (
                    f"{found}, outside the physical range of {self.quantity} ({lo:.6g} to "
                    f"{hi:.6g}{units}){hint}"
                )
        far = max(self.sigmas(low), self.sigmas(high))
        if far > MAX_SIGMA:
            lo = self.mean - MAX_SIGMA * self.std
            hi = self.mean + MAX_SIGMA * self.std
            span = f"{lo:.6g} to {hi:.6g}" if self.transform == "none" else "its training range"
            hint = _likely_mistake(low, high, lo, hi) if self.transform == "none" else ""
            return (
                f"{found}, {far:.3g} standard deviations from the training mean (more than "
                f"{MAX_SIGMA:g}; the model knows about {span}{units}){hint}"
            )
        return None

    def check(self, low: float, high: float, *, role: str = "lr") -> None:
        """Raise when ``[low, high]`` is not believable (see the module docstring).

        Raises
        ------
        ValueError
            Naming the variable, the range found and expected, a likely mistake and the
            switch that skips the check.
        """
        problem = self.problem(low, high)
        if problem is not None:
            raise ValueError(
                f"{role} variable {self.name!r} has {problem}. Fix the data or its units "
                f"attribute, or pass check_plausibility=False (CLI: --no-plausibility-check) "
                "if these values are right"
            )


def _likely_mistake(low: float, high: float, lo: float, hi: float) -> str:
    """A transformation that brings ``[low, high]`` inside ``[lo, hi]``, as a hint."""
    candidates: list[tuple[str, Any]] = [
        ("Kelvin numbers labelled 'degC'?", lambda v: v - 273.15),
        ("Celsius numbers labelled 'K'?", lambda v: v + 273.15),
    ]
    for factor, label in ((3600.0, "3600 (per hour vs per second?)"),
                          (86400.0, "86400 (per day vs per second?)"),
                          *((10.0**k, f"10**{k}") for k in (1, 2, 3, 6, 9))):  # fmt: skip
        candidates.append(
            (f"values {label} times too large: wrong units?", lambda v, f=factor: v / f)
        )
        candidates.append(
            (f"values {label} times too small: wrong units?", lambda v, f=factor: v * f)
        )
    span = hi - lo
    for text, fix in candidates:
        a, b = sorted((fix(low), fix(high)))
        if lo - 0.01 * span <= a and b <= hi + 0.01 * span and (a, b) != (low, high):
            return f"; likely mistake: {text}"
    return ""


def _physical_bounds(
    units: str, mean: float, transform: str
) -> tuple[tuple[float, float] | None, str]:
    if not units or transform != "none":
        return None, ""
    from xcorrdiff.data.units import parse_units, unit_conversion

    try:
        dims = dict(parse_units(units).dimensionality)
    except (ValueError, TypeError):  # dBZ and other units pint does not know
        return None, ""
    for quantity, wanted, (lo, hi), si, gated in _PHYSICAL:
        if dims != wanted:
            continue
        scale, offset = unit_conversion(si, units)
        bounds = (lo * scale + offset, hi * scale + offset)
        if gated and not bounds[0] <= mean <= bounds[1]:
            return None, ""  # trained on anomalies or differences: no absolute bound
        return bounds, quantity
    return None, ""


def expected_ranges(
    variables: Sequence[Any], stats: Mapping[str, Any]
) -> tuple[ExpectedRange, ...]:
    """The :class:`ExpectedRange` of each variable.

    Parameters
    ----------
    variables : sequence of VariableSpec
        Name and model units of each input.
    stats : mapping of str to VariableStats
        The model's input normalization statistics (``mean``, ``std``, ``transform``).
    """
    out = []
    for spec in variables:
        entry = stats[spec.name]
        physical, quantity = _physical_bounds(spec.units, entry.mean, entry.transform)
        out.append(
            ExpectedRange(
                name=spec.name,
                units=spec.units,
                mean=float(entry.mean),
                std=float(entry.std),
                transform=str(entry.transform),
                physical=physical,
                quantity=quantity,
            )
        )
    return tuple(out)
