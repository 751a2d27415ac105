"""Behaviour of xcorrdiff.nn modules: layouts, EDM math, positional grids, input checks."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from xcorrdiff.nn import (
    EDMPrecondSR,
    EDMPrecondSuperResolution,
    SongUNet,
    SongUNetPosEmbd,
    UNet,
    edm_scalings,
)
from xcorrdiff.nn.group_norm import GroupNorm, group_norm_groups, make_group_norm
from xcorrdiff.nn.layers import UNetAttention

TINY = {
    "model_channels": 8,
    "channel_mult": [1, 2],
    "attn_resolutions": [8],
    "num_blocks": 1,
}


def _perturb(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random values for every parameter (zero-initialised ones included)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(
                torch.randn(p.shape, generator=gen) / math.sqrt(p[0].numel() if p.ndim > 1 else 4)
            )
    return module.eval()


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


# Group norm.


def test_group_norm_groups_follow_physicsnemo() -> None:
    assert group_norm_groups(128) == 32
    assert group_norm_groups(16) == 4
    assert group_norm_groups(8) == 2
    with pytest.raises(ValueError, match="num_channels 10 is not divisible by the 3 groups"):
        group_norm_groups(10)


def test_group_norm_train_is_torch_and_eval_is_unbiased() -> None:
    norm = _perturb(GroupNorm(16, eps=1e-6), seed=1)
    x = _randn(3, 16, 5, 7, seed=2) * 3 + 1
    norm.train()
    torch.testing.assert_close(norm(x), F.group_norm(x, 4, norm.weight, norm.bias, 1e-6))
    norm.eval()
    g = x.reshape(3, 4, -1)
    explicit = (g - g.mean(-1, keepdim=True)) * (
        g.var(-1, keepdim=True, unbiased=True) + 1e-6
    ).rsqrt()
    explicit = explicit.reshape(x.shape) * norm.weight.reshape(1, -1, 1, 1) + norm.bias.reshape(
        1, -1, 1, 1
    )
    torch.testing.assert_close(norm(x), explicit, rtol=1e-5, atol=1e-6)
    act = GroupNorm(16, eps=1e-6, act="silu").eval()
    act.load_state_dict(norm.state_dict())
    torch.testing.assert_close(act(x), F.silu(norm(x)))
    assert set(norm.state_dict()) == {"weight", "bias"}


def test_apex_group_norm_falls_back_with_a_warning() -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA present: apex may be used")
    with pytest.warns(RuntimeWarning, match="apex.contrib.group_norm"):
        norm = make_group_norm(32, use_apex_gn=True)
    assert isinstance(norm, GroupNorm)


# Memory format.


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    out = x.contiguous(memory_format=torch.channels_last)
    assert not out.is_contiguous()
    return out


@pytest.mark.parametrize("training", [False, True])
def test_group_norm_and_attention_accept_channels_last(training: bool) -> None:
    x = _randn(2, 16, 8, 8, seed=3)
    for module in (GroupNorm(16, act="silu"), UNetAttention(out_channels=16, num_heads=2)):
        _perturb(module).train(training)
        torch.testing.assert_close(module(_channels_last(x)), module(x), rtol=1e-5, atol=1e-6)


def test_networks_accept_channels_last() -> None:
    torch.manual_seed(0)
    x, lr = _randn(2, 2, 16, 16, seed=4), _randn(2, 3, 16, 16, seed=5)
    sigma = torch.tensor([0.3, 3.0])
    edm = _perturb(EDMPrecondSuperResolution(16, 3 + 4, 2, **TINY))
    reg = _perturb(UNet(16, 3 + 4, 2, embedding_type="zero", **TINY))
    with torch.no_grad():
        torch.testing.assert_close(
            edm(_channels_last(x), _channels_last(lr), sigma),
            edm(x, lr, sigma),
            rtol=1e-5,
            atol=1e-5,
        )
        torch.testing.assert_close(
            reg(_channels_last(x), _channels_last(lr)), reg(x, lr), rtol=1e-5, atol=1e-5
        )


# EDM preconditioning.


def test_edm_scalings_limits_and_unit_variance() -> None:
    sigma = torch.tensor([1e-6, 0.5, 80.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = edm_scalings(sigma, sigma_data=0.5)
    assert c_skip[0] == pytest.approx(1.0) and c_out[0] == pytest.approx(0.0, abs=1e-5)
    # Network input and training target have unit variance (Karras et al. 2022, eqs. 8 and 9).
    torch.testing.assert_close(c_in**2 * (0.5**2 + sigma**2), torch.ones(3, dtype=torch.float64))
    target_var = ((1 - c_skip) ** 2 * 0.5**2 + c_skip**2 * sigma**2) / c_out**2
    torch.testing.assert_close(target_var, torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(c_noise, sigma.log() / 4)


def test_edm_denoiser_formula_and_identity_at_zero_noise() -> None:
    net = _perturb(EDMPrecondSuperResolution(16, 3 + 4, 2, **TINY))
    x, lr = _randn(2, 2, 16, 16, seed=6), _randn(2, 3, 16, 16, seed=7)
    sigma = torch.tensor([0.2, 5.0])
    with torch.no_grad():
        out = net(x, lr, sigma)
        c_skip, c_out, c_in, c_noise = edm_scalings(sigma.reshape(-1, 1, 1, 1))
        F_x = net.model(torch.cat([c_in * x, lr], dim=1), c_noise.flatten())
        torch.testing.assert_close(out, c_skip * x + c_out * F_x)
        torch.testing.assert_close(net(x, lr, 1e-7), x, atol=1e-5, rtol=0)
        # A scalar sigma and a (batch, 1, 1, 1) sigma are accepted like a (batch,) one.
        torch.testing.assert_close(net(x, lr, sigma.reshape(-1, 1, 1, 1)), out)
    assert net.sigma_min == 0.0 and net.sigma_max == math.inf and net.sigma_data == 0.5
    assert torch.equal(net.round_sigma(0.25), torch.tensor(0.25))


def test_edm_sr_legacy_scales_the_condition() -> None:
    new = _perturb(EDMPrecondSuperResolution(16, 3 + 4, 2, **TINY))
    legacy = EDMPrecondSR(16, 4, 3 + 4, 2, scale_cond_input=True, **TINY).eval()
    fixed = EDMPrecondSR(16, 4, 3 + 4, 2, scale_cond_input=False, **TINY).eval()
    legacy.load_state_dict(new.state_dict())
    fixed.load_state_dict(new.state_dict())
    x, lr, sigma = _randn(1, 2, 16, 16, seed=8), _randn(1, 3, 16, 16, seed=9), torch.tensor([4.0])
    with torch.no_grad():
        torch.testing.assert_close(fixed(x, lr, sigma), new(x, lr, sigma))
        c_skip, c_out, c_in, c_noise = edm_scalings(sigma.reshape(-1, 1, 1, 1))
        expected = c_skip * x + c_out * new.model(
            c_in * torch.cat([x, lr], dim=1), c_noise.flatten()
        )
        torch.testing.assert_close(legacy(x, lr, sigma), expected)
        assert not torch.allclose(legacy(x, lr, sigma), new(x, lr, sigma))


def test_regression_unet_is_the_network_at_noise_zero() -> None:
    net = _perturb(UNet(16, 3 + 4, 2, embedding_type="positional", **TINY))
    x, lr = torch.zeros(2, 2, 16, 16), _randn(2, 3, 16, 16, seed=10)
    with torch.no_grad():
        expected = net.model(torch.cat([x, lr], dim=1), torch.zeros(2))
        torch.testing.assert_close(net(x, lr), expected)
        assert not torch.allclose(net(x, lr), net.model(torch.cat([x, lr], dim=1), torch.ones(2)))


# Positional grids and patches.


def test_sinusoidal_grid_formula_and_persistence() -> None:
    net = SongUNetPosEmbd(img_resolution=(16, 32), in_channels=2 + 4, out_channels=1, **TINY)
    x = np.linspace(0, 2 * np.pi, 32)
    y = np.linspace(0, 2 * np.pi, 16)
    assert net.pos_embd is not None
    torch.testing.assert_close(
        net.pos_embd[0], torch.tensor(np.sin(x)[None, :].repeat(16, 0), dtype=torch.float32)
    )
    torch.testing.assert_close(
        net.pos_embd[1], torch.tensor(np.sin(y)[:, None].repeat(32, 1), dtype=torch.float32)
    )
    torch.testing.assert_close(
        net.pos_embd[2], torch.tensor(np.cos(x)[None, :].repeat(16, 0), dtype=torch.float32)
    )
    torch.testing.assert_close(
        net.pos_embd[3], torch.tensor(np.cos(y)[:, None].repeat(32, 1), dtype=torch.float32)
    )
    assert "pos_embd" not in net.state_dict()
    learnable = SongUNetPosEmbd(16, 2 + 5, 1, gridtype="learnable", N_grid_channels=5, **TINY)
    assert learnable.state_dict()["pos_embd"].shape == (5, 16, 16)
    assert isinstance(learnable.pos_embd, torch.nn.Parameter)
    none = SongUNetPosEmbd(16, 2, 1, gridtype="none", **TINY)
    assert none.pos_embd is None and none(torch.zeros(1, 2, 16, 16), torch.zeros(1)).shape == (
        1,
        1,
        16,
        16,
    )


def test_patches_take_their_slice_of_the_grid() -> None:
    net = _perturb(SongUNetPosEmbd(32, 2 + 4, 1, gridtype="learnable", **TINY))
    assert net.pos_embd is not None
    rows = torch.arange(16)
    # Two patches: top-left and bottom-right 16x16 blocks; batch of 2 (patch index fastest).
    corners = [(0, 0), (16, 16)]
    index = torch.stack(
        [torch.stack(torch.meshgrid(rows + r, rows + c, indexing="ij")) for r, c in corners]
    )
    x = _randn(4, 2, 16, 16, seed=11)
    grid = net.positional_embedding_indexing(x, index)
    for i in range(4):
        r, c = corners[i % 2]
        torch.testing.assert_close(grid[i], net.pos_embd[:, r : r + 16, c : c + 16])
    # The whole domain as one patch equals no index at all.
    full = torch.stack(torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij"))[None]
    xf = _randn(1, 2, 32, 32, seed=12)
    with torch.no_grad():
        torch.testing.assert_close(
            net(xf, torch.ones(1), global_index=full), net(xf, torch.ones(1))
        )
        # Only the grid differs between the two patches: same x, different outputs.
        same = x[:1].expand(2, -1, -1, -1)
        out = net(same, torch.ones(1), global_index=index)
        assert not torch.allclose(out[0], out[1])
    with pytest.raises(ValueError, match="outside the grid"):
        net.positional_embedding_indexing(x, index + 20)
    with pytest.raises(ValueError, match="does not fit x of shape"):
        net.positional_embedding_indexing(x[:3], index)
    with pytest.raises(ValueError, match="either embedding_selector or global_index"):
        net(x, torch.ones(1), global_index=index, embedding_selector=lambda g: g)
    with pytest.raises(ValueError, match=r"pass global_index \(or embedding_selector\)"):
        net(x, torch.ones(1))


# Bad input.


def test_wrong_channels_name_expected_and_received() -> None:
    song = SongUNet(16, 3, 2, **TINY)
    with pytest.raises(ValueError, match="SongUNet expects x with 3 channels, got 4"):
        song(torch.zeros(1, 4, 16, 16), torch.zeros(1))
    pos = SongUNetPosEmbd(16, 3 + 4, 2, **TINY)
    with pytest.raises(
        ValueError, match=r"expects x with 3 channels \(in_channels 7 minus 4 embedding channels\)"
    ):
        pos(torch.zeros(1, 7, 16, 16), torch.zeros(1))
    edm = EDMPrecondSuperResolution(16, 12 + 4, 4, **TINY)
    with pytest.raises(
        ValueError, match=r"img_lr must have 12 channels \(img_in_channels 16 minus 4 grid"
    ):
        edm(torch.zeros(1, 4, 16, 16), torch.zeros(1, 16, 16, 16), torch.ones(1))
    with pytest.raises(ValueError, match="x must have img_out_channels=4 channels, got 3"):
        edm(torch.zeros(1, 3, 16, 16), torch.zeros(1, 12, 16, 16), torch.ones(1))
    reg = UNet(16, 12 + 4, 4, **TINY)
    with pytest.raises(ValueError, match="must match x of shape"):
        reg(torch.zeros(1, 4, 16, 16), torch.zeros(1, 12, 8, 8))
    with pytest.raises(ValueError, match=r"noise_labels must have shape \(2,\) or \(1,\)"):
        song(torch.zeros(2, 3, 16, 16), torch.zeros(3))
    labelled = SongUNet(16, 3, 2, label_dim=2, **TINY)
    with pytest.raises(ValueError, match=r"class_labels must have shape \(1, 2\), got None"):
        labelled(torch.zeros(1, 3, 16, 16), torch.zeros(1))


def test_image_size_not_divisible_is_rejected_with_accepted_sizes() -> None:
    net = SongUNet(
        32, 1, 1, model_channels=8, channel_mult=[1, 2, 2, 2], attn_resolutions=[], num_blocks=1
    )
    with pytest.raises(ValueError, match=r"divisible by 2\*\*3 = 8, got \(20, 32\).*20 → 16 or 24"):
        net(torch.zeros(1, 1, 20, 32), torch.zeros(1))
    # Other divisible sizes than img_resolution are fine for SongUNet.
    assert net(torch.zeros(1, 1, 24, 40), torch.zeros(1)).shape == (1, 1, 24, 40)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"embedding_type": "learned"}, "embedding_type 'learned' is not supported"),
        ({"decoder_type": "skip"}, "decoder_type 'skip' is not supported"),
        ({"gridtype": "test"}, "gridtype 'test' is not supported"),
        ({"gridtype": "sinusoidal", "N_grid_channels": 6}, "N_grid_channels divisible by 4, got 6"),
        ({"lead_time_mode": True, "lead_time_channels": 4}, "lead-time embeddings"),
    ],
)
def test_bad_constructor_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SongUNetPosEmbd(16, 10, 1, **{**TINY, **kwargs})


def test_unsupported_model_type() -> None:
    with pytest.raises(ValueError, match="model_type 'DhariwalUNet' is not supported"):
        UNet(16, 3, 1, model_type="DhariwalUNet", **TINY)  # type: ignore[arg-type]


# Configs, training mode, gradient checkpointing.


def test_config_is_json_and_rebuilds_every_module() -> None:
    modules = [
        SongUNet((16, 32), 3, 2, label_dim=2, embedding_type="fourier", **TINY),
        SongUNetPosEmbd(16, 3 + 4, 2, **TINY),
        UNet(16, 3 + 4, 2, embedding_type="zero", **TINY),
        EDMPrecondSuperResolution(16, 3 + 4, 2, sigma_min=0.002, **TINY),
        EDMPrecondSR(16, 4, 3 + 4, 2, **TINY),
    ]
    for module in modules:
        config = json.loads(json.dumps(module.config))
        assert config == module.config
        rebuilt = type(module)(**config)
        assert rebuilt.config == module.config
        assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
            k: v.shape for k, v in module.state_dict().items()
        }
    assert modules[2].config["channel_mult"] == [1, 2] and modules[2].config["img_in_channels"] == 7


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    torch.manual_seed(0)
    plain = _perturb(SongUNet(16, 2, 1, dropout=0.0, **TINY))
    ckpt = SongUNet(16, 2, 1, dropout=0.0, checkpoint_level=2, **TINY)
    ckpt.load_state_dict(plain.state_dict())
    x = _randn(2, 2, 16, 16, seed=13)
    grads = []
    for net in (plain, ckpt):
        net.train().zero_grad()
        net(x, torch.ones(2)).square().mean().backward()
        grads.append(net.enc["16x16_conv"].weight.grad.clone())  # type: ignore[union-attr]
    torch.testing.assert_close(grads[0], grads[1])


def test_dropout_only_in_training() -> None:
    net = _perturb(SongUNet(16, 2, 1, dropout=0.5, **TINY))
    x = _randn(1, 2, 16, 16, seed=14)
    with torch.no_grad():
        assert torch.equal(net.eval()(x, torch.ones(1)), net(x, torch.ones(1)))
        net.train()
        assert not torch.equal(net(x, torch.ones(1)), net(x, torch.ones(1)))


def test_float16_inputs_run_with_float32_weights() -> None:
    net = _perturb(SongUNet(16, 2, 1, **TINY))
    x = _randn(1, 2, 16, 16, seed=15)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out16 = net(x.to(torch.bfloat16), torch.ones(1, dtype=torch.bfloat16))
    assert out16.dtype == torch.bfloat16
    torch.testing.assert_close(out16.float(), net(x, torch.ones(1)), atol=0.1, rtol=0.1)
