"""The public training entry point, :func:`fit`: both stages, every argument spelled out.

Like :mod:`xcorrdiff.inference.api`, this module imports neither torch nor the training
code (so the ``.corrdiff`` accessor can bind :func:`fit` at import time); the stages load on
the first call.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

import xarray as xr

if TYPE_CHECKING:
    from xcorrdiff.model import CorrDiffModel
    from xcorrdiff.train.config import TrainConfig

__all__ = ["fit"]


def fit(
    lr: xr.Dataset,
    hr: xr.Dataset,
    *,
    config: TrainConfig | None = None,
    invariants: xr.Dataset | Sequence[str] | None = None,
    input_variables: Sequence[Hashable] | None = None,
    output_variables: Sequence[Hashable] | None = None,
    regrid_method: str = "bilinear",
    calibrate: bool = False,
    progress: bool = True,
) -> CorrDiffModel:
    """Train both CorrDiff stages: :func:`~xcorrdiff.train.fit_regression`, then
    :func:`~xcorrdiff.train.fit_diffusion`.

    ``config`` and ``progress`` apply to both stages; the data arguments (``invariants``,
    ``input_variables``, ``output_variables``, ``regrid_method``) are those of
    :func:`~xcorrdiff.train.fit_regression`. ``lr`` may be on a coarse grid: training runs
    the prepare step of inference (units → regrid onto the HR grid → invariants →
    normalize).

    With ``calibrate=True`` the trained model is then calibrated on the validation times it
    was trained without (the last ``validation_fraction`` of the record):
    :func:`xcorrdiff.calibrate` chooses each output's initial-noise factor there by fair
    CRPS (16 members) and records its search in ``provenance["calibration"]``. It needs
    ``validation_fraction > 0``, checked before training. On a record of a few days the
    held-out times cost more skill than calibration returns (docs/user-guide/training.md,
    "Calibrating the spread after training"): train such a record on every time.

    Returns
    -------
    CorrDiffModel
        Regression and diffusion networks with everything needed to downscale.

    Examples
    --------
    >>> import xcorrdiff  # doctest: +SKIP
    >>> lr, hr = xcorrdiff.tutorial.make_synthetic(n_times=64, hr_shape=(64, 64))  # doctest: +SKIP
    >>> model = lr.corrdiff.fit(hr, config=xcorrdiff.TrainConfig(preset="tiny"))  # doctest: +SKIP
    """
    from xcorrdiff.train.config import TrainConfig
    from xcorrdiff.train.stages import fit_diffusion, fit_regression

    config = config if config is not None else TrainConfig()
    if calibrate and config.data.validation_fraction <= 0:
        raise ValueError(
            f"calibrate=True needs validation times to calibrate on, but "
            f"validation_fraction={config.data.validation_fraction}; set "
            "TrainConfig(validation_fraction=0.1) or call xcorrdiff.calibrate on held-out data"
        )
    model = fit_regression(
        lr, hr, config=config, invariants=invariants, input_variables=input_variables,
        output_variables=output_variables, regrid_method=regrid_method, progress=progress,
    )  # fmt: skip
    model = fit_diffusion(model, lr, hr, config=config, progress=progress)
    return _on_validation_times(model, lr, hr, config) if calibrate else model


def _on_validation_times(
    model: CorrDiffModel, lr: xr.Dataset, hr: xr.Dataset, config: TrainConfig
) -> CorrDiffModel:
    """``model`` calibrated on the validation times its stages recorded (a contiguous
    span at the end of the record, as ``str`` of its first and last time)."""
    from xcorrdiff.inference.calibrate import calibrate

    # str of each time, as the span was written: an index's astype(str) drops the clock
    # of an all-midnight (daily) record, "2011-10-02" against "2011-10-02 00:00:00"
    labels = [str(t) for t in lr.indexes["time"]]
    first, last = model.provenance["diffusion"]["validation_time_span"]
    held = lr["time"][labels.index(first) : labels.index(last) + 1]
    names = list(model.output_names)
    return calibrate(
        model, lr.sel(time=held), hr[names].sel(time=held), device=config.runtime.device
    )
