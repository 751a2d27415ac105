"""Training internals: schedules, EMA, checkpoints and the stage loop.

The public entry points are :func:`xcorrdiff.train.fit`, :func:`xcorrdiff.train.fit_regression`
and :func:`xcorrdiff.train.fit_diffusion`.
"""
