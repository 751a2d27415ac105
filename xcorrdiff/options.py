"""Global options: the default model and device of :func:`xcorrdiff.inference.api.downscale`.

``set_options`` works like :func:`xarray.set_options`: called plainly it sets the options
for the rest of the session; used in a ``with`` block it restores the previous values on
exit. This module imports neither torch nor the model code.

Examples
--------
>>> import xcorrdiff
>>> with xcorrdiff.set_options(device="cpu"):
...     xcorrdiff.get_options()["device"]
'cpu'
>>> xcorrdiff.get_options()["device"] is None
True
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any

__all__ = ["get_options", "set_options"]

OPTIONS: dict[str, Any] = {"model": None, "device": None}


def _check_model(value: object) -> None:
    if value is None or isinstance(value, (str, os.PathLike)):
        return
    if type(value).__name__ == "CorrDiffModel":
        return
    raise TypeError(
        f"model={value!r} is invalid; expected a CorrDiffModel, the path of a saved model "
        "directory (str or os.PathLike), or None"
    )


def _check_device(value: object) -> None:
    if value is None or (isinstance(value, str) and value):
        return
    if type(value).__name__ == "device":  # torch.device, without importing torch
        return
    raise TypeError(
        f"device={value!r} is invalid; expected 'cpu', 'cuda', 'cuda:N', a torch.device or None"
    )


_VALIDATORS = {"model": _check_model, "device": _check_device}


class set_options:
    """Set global options for downscaling, for the session or inside a ``with`` block.

    Parameters
    ----------
    model : CorrDiffModel or path-like, optional
        Model used by ``ds.corrdiff.downscale()`` when no ``model=`` is passed. A path is
        loaded on first use (once per process).
    device : str or torch.device, optional
        Device for inference; ``None`` picks CUDA when available, else the CPU.

    Raises
    ------
    ValueError
        For an unknown option name.
    TypeError
        For a value of the wrong type.

    Examples
    --------
    >>> import xcorrdiff
    >>> xcorrdiff.set_options(model="my_model_dir")  # doctest: +SKIP
    >>> with xcorrdiff.set_options(model=model):  # doctest: +SKIP
    ...     ens = lr.corrdiff.downscale(n_ensemble=8)
    """

    def __init__(self, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - set(OPTIONS))
        if unknown:
            raise ValueError(
                f"set_options got unknown option(s) {unknown}; expected some of {sorted(OPTIONS)}"
            )
        for name, value in kwargs.items():
            _VALIDATORS[name](value)
        self._old = {name: OPTIONS[name] for name in kwargs}
        OPTIONS.update(kwargs)

    def __enter__(self) -> set_options:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        OPTIONS.update(self._old)


def get_options() -> dict[str, Any]:
    """A copy of the current options (``model``, ``device``)."""
    return dict(OPTIONS)
