"""Per-variable transforms applied before normalization, and their exact inverses.

=================  ==============================  ==========================  ===============
name               forward ``g(x)``                inverse ``g⁻¹(z)``          for
=================  ==============================  ==========================  ===============
``"none"``         ``x``                           ``z``                       most fields
``"log1p"``        ``log(1 + x)``                  ``exp(z) - 1``              precipitation
``"asinh"``        ``asinh(x)``                    ``sinh(z)``                 signed, skewed
``"fourth_root"``  ``x ** (1/4)``                  ``max(z, 0) ** 4``          precipitation
``"logit"``        ``log(x / (1 - x))``, ``x``     ``1 / (1 + exp(-z))``       fractions (RH)
                   clipped to ``[ε, 1 - ε]``
=================  ==============================  ==========================  ===============

Each function is made of numpy ufuncs, so it works on numpy and dask arrays and on xarray
objects alike (lazily on dask). ``fourth_root`` of a negative value is NaN (so training
stops on bad data instead of learning a wrong field); ``logit`` clips to ``ε = 1e-4`` so
that exact 0 and 1 (saturation) stay finite.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

__all__ = ["TRANSFORMS", "Transform", "TransformSpec"]

Transform = Literal["none", "log1p", "asinh", "fourth_root", "logit"]

_EPS = 1e-4


@dataclass(frozen=True)
class TransformSpec:
    """A transform: forward and inverse functions, a value inside its domain (used to fill
    channels that do not take the transform), the range of its inverse, and its domain
    (``in_domain(lowest, highest)`` of the data, described by ``domain``)."""

    forward: Callable[[Any], Any]
    inverse: Callable[[Any], Any]
    safe: float
    output_range: tuple[float, float]
    domain: str = "any value"
    in_domain: Callable[[float, float], bool] = lambda low, high: True


def _logit(x: Any) -> Any:
    x = np.minimum(np.maximum(x, _EPS), 1 - _EPS)
    return np.log(x) - np.log1p(-x)


def _sigmoid(z: Any) -> Any:
    return 1 / (1 + np.exp(-z))


TRANSFORMS: dict[str, TransformSpec] = {
    "none": TransformSpec(lambda x: x, lambda z: z, 0.0, (-math.inf, math.inf)),
    "log1p": TransformSpec(
        np.log1p, np.expm1, 0.0, (-1.0, math.inf), "values > -1", lambda low, high: low > -1
    ),
    "asinh": TransformSpec(np.arcsinh, np.sinh, 0.0, (-math.inf, math.inf)),
    "fourth_root": TransformSpec(
        lambda x: np.sqrt(np.sqrt(x)),
        lambda z: np.square(np.square(np.maximum(z, 0))),
        0.0,
        (0.0, math.inf),
        "values >= 0",
        lambda low, high: low >= 0,
    ),
    "logit": TransformSpec(
        _logit, _sigmoid, 0.5, (0.0, 1.0), "fractions in [0, 1]", lambda lo, hi: 0 <= lo <= hi <= 1
    ),
}
assert set(TRANSFORMS) == set(get_args(Transform))
