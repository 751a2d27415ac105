"""Every random stream of training, derived from one seed by name.

A stream's seed is the first 64-bit word of ``numpy.random.SeedSequence(seed,
spawn_key=name)`` with the name's UTF-8 bytes as the spawn key: streams of different names
are independent, adding a stream never changes another one, and the same
``(seed, name)`` gives the same stream on every machine.

The names in use (:data:`STREAMS`), per stage ``regression`` / ``diffusion`` / ``student``
(:mod:`xcorrdiff.train.distillation`):

``init``        the network's initial weights;
``batches``     the shuffling of training times and the patch corners;
``dropout``     torch's global stream during the stage (dropout);
``noise``       the noise levels and noise of the residual loss (diffusion), the
                teacher's initial noise (student);
``validation``  the validation batches' patch corners and noise (diffusion).

A cross-fit regression (``TrainConfig(residual_folds=k)``) draws its ``regression.*`` streams
with its fold number in the spawn key, so each fold has streams of its own.

In a data-parallel run, ranks other than 0 mix their rank into these seeds
(:func:`xcorrdiff.train.distributed.rank_seed`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["STREAMS", "stream_seed"]

STREAMS: tuple[str, ...] = tuple(
    f"{stage}.{name}"
    for stage in ("regression", "diffusion", "student")
    for name in ("init", "batches", "dropout", "noise", "validation")
)


def stream_seed(seed: int, name: str, *, fold: int | None = None) -> int:
    """The seed of the training stream ``name`` (one of :data:`STREAMS`) under ``seed``;
    a cross-fit regression's ``fold`` (``TrainConfig(residual_folds=k)``) has its own.

    Examples
    --------
    >>> stream_seed(0, "diffusion.noise") == stream_seed(0, "diffusion.noise")
    True
    >>> stream_seed(0, "diffusion.noise") != stream_seed(0, "diffusion.init")
    True
    """
    if name not in STREAMS:
        raise ValueError(f"name={name!r} is not a training stream; expected one of {list(STREAMS)}")
    key = tuple(name.encode("utf-8")) + (() if fold is None else (0, int(fold)))
    sequence = np.random.SeedSequence(int(seed), spawn_key=key)
    return int(sequence.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
