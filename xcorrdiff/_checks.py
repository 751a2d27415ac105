"""The one home of the policies every layer shares: integers, choices, NaN counts, devices,
precision names.

Each check names the argument, what it received and what it expected. Nothing here imports
torch at module level, so the torch-free layers (``verify``) may use it too.

* Device: ``None`` means the option ``device`` (:func:`xcorrdiff.set_options`) when set,
  else (as its old spelling ``"auto"``) CUDA when available, else the CPU, everywhere; an
  explicit CUDA device on a machine without CUDA is an error.
* Precision: one vocabulary, ``"float32"``, ``"bfloat16"``, ``"float16"``; the short names
  ``"fp32"``, ``"bf16"``, ``"fp16"`` and torch dtypes are normalized to it here.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "PRECISIONS",
    "autocast",
    "check_bool",
    "check_choice",
    "check_int",
    "check_positive",
    "nonfinite_counts",
    "precision_name",
    "resolve_device",
    "torch_dtype",
]

#: The precision names, in the one vocabulary.
PRECISIONS: tuple[str, ...] = ("float32", "bfloat16", "float16")
_PRECISION_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def check_int(
    name: str, value: object, *, minimum: int = 0, maximum: int | None = None, hint: str = ""
) -> int:
    """``value`` as an ``int`` when it is an integer (not a bool) in ``[minimum, maximum]``;
    else a ``ValueError`` naming ``name``, the value and the range, then ``hint``."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)
    if ok and int(value) >= minimum and (maximum is None or int(value) <= maximum):  # type: ignore[call-overload]
        return int(value)  # type: ignore[call-overload]
    expected = (
        f"an integer >= {minimum}" if maximum is None else f"an integer in [{minimum}, {maximum}]"
    )
    raise ValueError(f"{name}={value!r} is invalid; expected {expected}{hint}")


def check_bool(name: str, value: object) -> bool:
    """``value`` when it is ``True`` or ``False`` (not ``0``/``1`` or another truthy object)."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise ValueError(f"{name}={value!r} is invalid; expected True or False")


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    """``value`` when it is a finite number above zero (or at least zero)."""
    real = isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)
    number = value if real else None
    if number is not None and math.isfinite(number) and (number >= 0 if allow_zero else number > 0):
        return value
    expected = "a finite number >= 0" if allow_zero else "a finite number > 0"
    raise ValueError(f"{name}={value!r} is invalid; expected {expected}")


def check_choice(name: str, value: object, choices: Sequence[object]) -> None:
    """Raise unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}={value!r} is invalid; expected one of {list(choices)}")


def nonfinite_counts(values: np.ndarray, names: Sequence[str], *, axis: int = 1) -> dict[str, int]:
    """NaN/inf counts per entry of ``axis`` (a channel or variable axis), nonzero ones only.

    Returns an empty dict when every value is finite (the common case costs one pass).
    """
    finite = np.isfinite(values)
    if finite.all():
        return {}
    others = tuple(i for i in range(values.ndim) if i != axis % values.ndim)
    counts = (~finite).sum(axis=others)
    return {name: int(c) for name, c in zip(names, counts, strict=True) if c}


def resolve_device(device: Any = None, *, local_rank: int | None = None) -> torch.device:
    """The ``torch.device`` for ``device``: ``None`` → the option ``device`` of
    :func:`xcorrdiff.set_options` when set; ``None`` then (or ``"auto"``) → CUDA when
    available, else CPU. Every place that takes ``device=`` resolves it here, so the option
    holds for loading, training, the regression mean and downscaling alike.

    With ``local_rank`` (a distributed run), ``None`` and ``"cuda"`` mean ``cuda:local_rank``.

    Raises
    ------
    ValueError
        For a string torch does not parse, or a CUDA device without CUDA.
    """
    import torch

    from xcorrdiff.options import OPTIONS

    if device is None:
        device = OPTIONS["device"]
    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and local_rank is not None and torch.cuda.is_available():
        device = f"cuda:{local_rank}"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is invalid; expected None (CUDA when available, else the CPU), "
            "'cpu', 'cuda' or 'cuda:N'"
        ) from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but CUDA is not available; use device='cpu'"
        )
    return resolved


def precision_name(value: Any, *, argument: str = "precision") -> str:
    """The canonical name (``"float32"``, ``"bfloat16"``, ``"float16"``) of a precision.

    Accepts the canonical names, their short forms (``"bf16"``...) and torch dtypes.
    """
    name = getattr(value, "__module__", None) == "torch" and str(value).removeprefix("torch.")
    name = name or (_PRECISION_ALIASES.get(value, value) if isinstance(value, str) else None)
    if name not in PRECISIONS:
        raise ValueError(
            f"{argument}={value!r} is invalid; expected one of {list(PRECISIONS)} (or "
            f"{list(_PRECISION_ALIASES)})"
        )
    return str(name)


def torch_dtype(precision: str) -> torch.dtype:
    """The torch dtype of a precision name (any accepted spelling)."""
    import torch

    dtype: torch.dtype = getattr(torch, precision_name(precision))
    return dtype


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` to ``precision`` on ``device``; nothing for ``"float32"``."""
    import torch

    name = precision_name(precision)
    if name == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch_dtype(name))
