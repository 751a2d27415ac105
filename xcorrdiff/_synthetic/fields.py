"""Random streams and Gaussian random fields by FFT synthesis.

Every random draw comes from its own :class:`numpy.random.Generator`, seeded by
``SeedSequence(seed, spawn_key=key)``: the same child ``SeedSequence(seed).spawn`` would
give, but addressed directly, so that one time step (or one ensemble member at one time)
can be drawn without drawing the others.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import fft as sfft

# Stream identifiers (first element of every spawn key).
STREAM_RIDGE = 0
STREAM_TERRAIN = 1
STREAM_WEATHER = 2
STREAM_TRUTH = 3
STREAM_ORACLE = 4


def generator(seed: int, *key: int) -> np.random.Generator:
    """A PCG64 generator for the stream ``key`` of ``seed``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def fft_size(n: int, pad: int) -> int:
    """A fast real-FFT length of at least ``n + pad``."""
    return int(sfft.next_fast_len(n + pad, real=True))


def _half_weights(shape: tuple[int, int]) -> np.ndarray:
    """Multiplicity of each rfft2 coefficient in the full spectrum, shape ``(py, px//2+1)``."""
    py, px = shape
    weights = np.full((py, px // 2 + 1), 2.0)
    weights[:, 0] = 1.0
    if px % 2 == 0:
        weights[:, -1] = 1.0
    return weights


def wavenumbers(shape: tuple[int, int], spacing: tuple[float, float]) -> tuple[np.ndarray, ...]:
    """``(ky, kx, k)`` on the rfft2 grid, in cycles per unit of ``spacing``."""
    py, px = shape
    ky = sfft.fftfreq(py, d=spacing[0])[:, None]
    kx = sfft.rfftfreq(px, d=spacing[1])[None, :]
    return ky, kx, np.hypot(ky, kx)


def spectral_amplitude(
    shape: tuple[int, int],
    spacing: tuple[float, float],
    power: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """Filter that turns unit white noise into a unit-variance field with spectrum ``power``.

    Parameters
    ----------
    shape : (py, px)
        FFT grid (periodic).
    spacing : (dy, dx)
        Grid spacing; ``power`` receives ``|k|`` in cycles per unit of spacing.
    power : callable
        Power spectral density per wavevector, up to a constant; the mean (``k = 0``) is
        removed.

    Returns
    -------
    numpy.ndarray
        Amplitudes on the rfft2 grid, float32, normalised so that
        ``irfft2(rfft2(w) * amp)`` has unit variance at every point for white ``w``.
    """
    _, _, k = wavenumbers(shape, spacing)
    psd = np.zeros_like(k)
    nonzero = k > 0
    psd[nonzero] = power(k[nonzero])
    total = float((psd * _half_weights(shape)).sum())
    return np.sqrt(psd * (shape[0] * shape[1]) / total).astype(np.float32)


def central_difference_std(
    amp: np.ndarray, shape: tuple[int, int], spacing: tuple[float, float]
) -> tuple[float, float]:
    """Standard deviations of the central differences ``(f[i+1] - f[i-1]) / (2 d)`` along
    y and x of a field synthesised with ``amp``."""
    ky, kx, _ = wavenumbers(shape, (1.0, 1.0))
    weights = _half_weights(shape) * amp.astype(np.float64) ** 2 / (shape[0] * shape[1])
    var_y = (weights * (np.sin(2 * np.pi * ky) / spacing[0]) ** 2).sum()
    var_x = (weights * (np.sin(2 * np.pi * kx) / spacing[1]) ** 2).sum()
    return float(np.sqrt(var_y)), float(np.sqrt(var_x))


def synthesize(white: np.ndarray, amp: np.ndarray) -> np.ndarray:
    """Filter white noise ``(..., py, px)`` with ``amp`` (rfft2 grid); float32 out."""
    spectrum = sfft.rfft2(white)
    spectrum *= amp
    return sfft.irfft2(spectrum, s=white.shape[-2:]).astype(np.float32, copy=False)
