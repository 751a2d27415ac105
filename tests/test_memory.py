"""Requests that cannot fit in memory are refused before anything is allocated, with the
estimate and the argument to change; a default member batch too large is lowered."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import tiny_data, tiny_model

import xcorrdiff.inference.memory as memory
from xcorrdiff._resources import physical_memory
from xcorrdiff.inference.api import downscale
from xcorrdiff.inference.memory import activation_bytes, check_memory
from xcorrdiff.train import build_diffusion
from xcorrdiff.train.config import TrainConfig

KW: dict[str, Any] = {"num_steps": 2, "device": "cpu"}


def _request(**kw: Any) -> dict[str, Any]:
    model = tiny_model()
    base = {
        "diffusion_config": model.diffusion.config,  # type: ignore[union-attr]
        "regression_config": model.regression.config,
        "sample_shape": model.shape,
        "grid_shape": model.shape,
        "n_outputs": 2,
        "n_ensemble": 4,
        "times_held": 1,
        "member_batch_size": 4,
        "explicit_batch": False,
        "device": "cpu",
        "dtype": "float32",
        "eager": False,
    }
    return {**base, **kw}


def test_an_ensemble_larger_than_memory_is_refused_with_the_knob() -> None:
    lr, _ = tiny_data(2)
    with pytest.raises(MemoryError, match=r"the whole ensemble \(1000000000 members x 2 times .* "
                       r"needs about .* TiB, more than .*; pass dask-backed input"):  # fmt: skip
        downscale(lr, tiny_model(), n_ensemble=10**9, **KW)
    with pytest.raises(MemoryError, match=r"one time chunk of the ensemble .* use fewer members"):
        downscale(lr.chunk(time=1), tiny_model(), n_ensemble=10**9, **KW)


def test_an_explicit_member_batch_that_cannot_fit_is_refused() -> None:
    lr, _ = tiny_data(1)
    model = tiny_model()
    per_sample = activation_bytes(model.diffusion.config, model.shape)  # type: ignore[union-attr]
    fits = physical_memory() // per_sample
    with pytest.raises(MemoryError, match=rf"member_batch_size={2 * fits} needs about .*; use "
                       rf"member_batch_size <= {fits}"):  # fmt: skip
        downscale(lr, model, n_ensemble=2, member_batch_size=2 * fits, **KW)


def test_a_default_member_batch_is_lowered_to_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    request = _request(member_batch_size=16)
    per_sample = check_memory(**request).per_sample
    monkeypatch.setattr(memory, "device_memory", lambda device: 3 * per_sample)
    assert check_memory(**request).member_batch_size == 3
    with pytest.raises(
        MemoryError, match=r"member_batch_size=16 needs .* use member_batch_size <= 3"
    ):
        check_memory(**{**request, "explicit_batch": True})


def test_one_sample_too_large_asks_for_patches() -> None:
    net = build_diffusion(
        TrainConfig(preset="normal"), shape=(448, 448), in_channels=12, out_channels=4
    )
    request = _request(diffusion_config=net.config, sample_shape=(1 << 16, 1 << 16))
    with pytest.raises(MemoryError, match=r"one sample needs about .* sample patch by patch"):
        check_memory(**request)


def test_activation_estimate_grows_with_pixels_batch_and_precision() -> None:
    net = build_diffusion(
        TrainConfig(preset="normal"), shape=(448, 448), in_channels=12, out_channels=4
    )
    small = activation_bytes(net.config, (224, 224))
    large = activation_bytes(net.config, (448, 448))
    assert 4 <= large / small <= 16  # linear in pixels, quadratic in the attention levels
    assert activation_bytes(net.config, (448, 448), 2) * 2 == large


def test_a_neighborhood_dit_is_estimated_by_its_window_with_or_without_rotary_embeddings() -> None:
    """A DiT's attention weights: every token pair for full attention, the kernel's window
    for neighborhood attention (``natten2d``, and ``natten2d_rope`` as the released
    CorrDiffEra5Hrrr network)."""
    dit = {"input_size": [1024, 1792], "patch_size": 2, "hidden_size": 64, "num_heads": 4,
           "attn_kwargs": {"attn_kernel": 7}}  # fmt: skip
    tokens, width = 512 * 896, (8 + 2 * 4.0) * 64
    for backend in ("natten2d", "natten2d_rope"):
        config = {"dit": {**dit, "attention_backend": backend}}
        assert activation_bytes(config, (1024, 1792)) == int(4 * tokens * (width + 4 * 49))
    full = activation_bytes({"dit": {**dit, "attention_backend": "timm"}}, (1024, 1792))
    assert full == int(4 * tokens * (width + 4 * tokens))
