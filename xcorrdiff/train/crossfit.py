"""Out-of-fold residuals for the diffusion stage (``TrainConfig(residual_folds=k)``).

The diffusion model learns the residual ``HR − μ``. With μ from a regression that was
trained on the same times, the residual is its *training* error, which shrinks as the
regression fits those times ever closer (on a short record, towards zero) while its error
on new data does not; the diffusion then learns to generate almost no spread. Cross-fitting
gives each training time the μ of a regression that did not see it: the training times are
cut into ``k`` contiguous folds (contiguous, so that neighbouring, correlated times do not
leak across), and the regression of fold ``j`` is trained on the other ``k − 1``.

:func:`fold_times` cuts the folds; :class:`OutOfFold` computes μ of a batch with each
sample's out-of-fold regression (times outside the training split, e.g. validation times,
use the model's own regression, as downscaling does). :func:`check_overfit` warns when a
regression's error on times it did not see is far above its error on its training times.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch

__all__ = ["OVERFIT_RATIO", "OutOfFold", "check_overfit", "fold_times"]


def fold_times(train: np.ndarray, folds: int) -> list[np.ndarray]:
    """The ``folds`` contiguous folds of the training time positions ``train``.

    Examples
    --------
    >>> [f.tolist() for f in fold_times(np.arange(5), 2)]
    [[0, 1, 2], [3, 4]]
    """
    if len(train) < folds:
        raise ValueError(
            f"residual_folds={folds} needs at least {folds} training times, got {len(train)}; "
            f"use residual_folds=0 or at most {len(train)} folds (>= 2)"
        )
    return [np.asarray(f) for f in np.array_split(np.asarray(train), folds)]


class OutOfFold:
    """μ of each sample from the regression that did not see its time.

    Parameters
    ----------
    folds : sequence of numpy.ndarray
        The time positions of each fold (:func:`fold_times`).
    mean_with : callable
        ``mean_with(fold, condition, lead) -> μ`` with ``fold`` an index into ``folds``,
        or ``None`` for the model's own regression.
    """

    def __init__(
        self,
        folds: Sequence[np.ndarray],
        mean_with: Callable[[int | None, torch.Tensor, torch.Tensor | None], torch.Tensor],
    ) -> None:
        self.fold_of = {int(t): j for j, times in enumerate(folds) for t in times}
        self.mean_with = mean_with

    def __call__(
        self, condition: torch.Tensor, lead: torch.Tensor | None, time_index: torch.Tensor
    ) -> torch.Tensor:
        """μ ``(rows, C_out, H, W)`` of the rows of ``condition`` at ``time_index``."""
        owners = [self.fold_of.get(int(t)) for t in time_index.tolist()]
        parts: dict[int | None, list[int]] = {}
        for row, owner in enumerate(owners):
            parts.setdefault(owner, []).append(row)
        out: torch.Tensor | None = None
        for owner, rows in parts.items():
            pick = torch.tensor(rows, device=condition.device)
            sub_lead = None if lead is None else lead[pick]
            mu = self.mean_with(owner, condition[pick], sub_lead)
            if out is None:
                out = mu.new_empty((condition.shape[0], *mu.shape[1:]))
            out[pick] = mu
        assert out is not None  # a batch has at least one row
        return out


#: A regression whose error on times it did not see exceeds this multiple of its error on
#: its training times (root mean square, any output) is reported as fitting its training
#: times far closer than new data.
OVERFIT_RATIO = 2.0


def check_overfit(
    seen: torch.Tensor,
    unseen: torch.Tensor,
    names: Sequence[str],
    *,
    unseen_label: str,
    advice: str,
) -> dict[str, dict[str, float]]:
    """Warn when the regression's rms error on unseen times is more than
    :data:`OVERFIT_RATIO` times its error on the times it was trained on (normalized units,
    per output); return both per output for the model's provenance."""
    record = {
        name: {"training_times": float(a), unseen_label: float(b)}
        for name, a, b in zip(names, seen, unseen, strict=True)
    }
    flagged = {
        name: f"{float(a):.3g} vs {float(b):.3g}"
        for name, a, b in zip(names, seen, unseen, strict=True)
        if float(b) > OVERFIT_RATIO * float(a)
    }
    if flagged:
        warnings.warn(
            f"the regression fits its training times far closer than times it did not see: "
            f"rms error (normalized units) on the training times vs on {unseen_label}: "
            f"{flagged} (more than {OVERFIT_RATIO:g}x). Residuals of the training times are "
            f"then smaller than on new data, and a diffusion model learning them generates "
            f"too little spread; {advice}",
            UserWarning,
            stacklevel=4,
        )
    return record
