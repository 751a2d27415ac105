"""Regression and residual EDM losses: formulas, draws, patch reuse of the mean, errors."""

from __future__ import annotations

import pathlib
import sys

import pytest
import torch

from xcorrdiff.diffusion import (
    build_condition,
    crop_condition,
    edm_loss_weight,
    extract_patches,
    random_patch_offsets,
    regression_loss,
    residual_loss,
)

sys.path.insert(0, str(pathlib.Path(__file__).parent / "fixtures"))

from toy_denoisers import ToyDenoiser, ToyRegression


def _loss(net, y, img_lr, mean, *, offsets=None, patch_shape=None, hr_mean_conditioning=True,
          residual_scale=None, **draws):  # fmt: skip
    """The residual loss as the diffusion stage assembles it: residual and condition cut at
    the same corners (xcorrdiff.train.stages.DiffusionStage)."""
    residual = y - mean
    if residual_scale is not None:
        residual = residual / residual_scale.reshape(1, -1, 1, 1)
    condition = build_condition(img_lr, mean if hr_mean_conditioning else None)
    if offsets is not None:
        condition = crop_condition(condition, offsets, patch_shape)
        residual = extract_patches(residual, offsets, patch_shape)
    return residual_loss(net, residual, condition, **draws)


class Pointwise:
    """A pointwise denoiser using the condition's first channels: patch-invariant."""

    def __call__(self, x, condition, sigma, embedding_selector=None):
        sigma = sigma.reshape(-1, 1, 1, 1)
        return torch.tanh(x) / (1 + sigma) + 0.3 * condition[:, : x.shape[1]]


def _data(batch: int = 2, shape: tuple[int, int] = (12, 16)):
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(batch, 2, *shape, generator=g),
        torch.randn(batch, 3, *shape, generator=g),
        torch.randn(batch, 2, *shape, generator=g),
    )


def test_edm_loss_weight_cancels_output_scaling() -> None:
    # λ(σ) c_out(σ)² = 1: the EDM weight makes the effective target of F unit-weighted.
    sigma = torch.logspace(-3, 3, 25, dtype=torch.float64)
    c_out = sigma * 0.5 / (sigma**2 + 0.25).sqrt()
    torch.testing.assert_close(edm_loss_weight(sigma) * c_out**2, torch.ones_like(sigma))


def test_regression_loss_is_squared_error_and_trains() -> None:
    y, img_lr, _ = _data()
    net = ToyRegression(2, 3, seed=1)
    loss = regression_loss(net, y, build_condition(img_lr))
    expected = (net(torch.zeros_like(y), img_lr) - y) ** 2
    assert loss.shape == y.shape
    assert torch.equal(loss, expected)
    loss.mean().backward()
    assert net.w1.grad is not None and float(net.w1.grad.abs().sum()) > 0


def _recording(seen: dict[str, torch.Tensor]):  # type: ignore[no-untyped-def]
    """The :class:`Pointwise` denoiser, recording the condition it is called with."""

    def net(x, condition, sigma):
        seen["condition"] = condition
        return Pointwise()(x, condition, sigma)

    return net


def _expected_loss(r, noise, sigma, condition):  # type: ignore[no-untyped-def]
    """The EDM loss of :class:`Pointwise` on target ``r``, written out."""
    s = sigma.reshape(-1, 1, 1, 1)
    return edm_loss_weight(s) * (Pointwise()(r + s * noise, condition, sigma) - r) ** 2


def test_residual_loss_formula_and_conditioning() -> None:
    y, img_lr, mean = _data()
    seen: dict[str, torch.Tensor] = {}
    net = _recording(seen)
    sigma = torch.tensor([0.3, 4.0])
    noise = torch.randn_like(y)
    loss = _loss(net, y, img_lr, mean, sigma=sigma, noise=noise)
    expected = _expected_loss(y - mean, noise, sigma, torch.cat([mean, img_lr], 1))
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)
    assert torch.equal(seen["condition"], torch.cat([mean, img_lr], dim=1))
    _loss(net, y, img_lr, mean, sigma=sigma, noise=noise, hr_mean_conditioning=False)
    assert torch.equal(seen["condition"], img_lr)


def test_residual_scale_divides_the_target_not_the_condition() -> None:
    y, img_lr, mean = _data()
    seen: dict[str, torch.Tensor] = {}
    net = _recording(seen)
    sigma = torch.tensor([0.05, 2.0])
    noise = torch.randn_like(y)
    scale = torch.tensor([0.25, 3.0])
    loss = _loss(net, y, img_lr, mean, sigma=sigma, noise=noise, residual_scale=scale)
    r = (y - mean) / scale.reshape(1, 2, 1, 1)
    expected = _expected_loss(r, noise, sigma, torch.cat([mean, img_lr], 1))
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)
    assert torch.equal(seen["condition"], torch.cat([mean, img_lr], dim=1))
    # Scale 1 is PhysicsNeMo's loss, bit for bit.
    plain = _loss(net, y, img_lr, mean, sigma=sigma, noise=noise)
    ones = _loss(net, y, img_lr, mean, sigma=sigma, noise=noise,
                         residual_scale=torch.ones(2))  # fmt: skip
    assert torch.equal(plain, ones)


def test_residual_loss_draws_from_generator() -> None:
    y, img_lr, mean = _data()
    net = ToyDenoiser(2, 5, (12, 16), seed=4)
    a = _loss(net, y, img_lr, mean, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    sigma = (torch.randn(2, generator=g) * 1.2).exp()  # sigma first, then the noise
    noise = torch.randn(y.shape, generator=g)
    b = _loss(net, y, img_lr, mean, sigma=sigma, noise=noise)
    assert torch.equal(a, b)
    c = _loss(net, y, img_lr, mean, generator=torch.Generator().manual_seed(6))
    assert not torch.equal(a, c)


def test_residual_loss_sigma_is_lognormal() -> None:
    y = torch.zeros(4000, 1, 1, 1)
    seen = {}

    def net(x, condition, sigma):
        seen["sigma"] = sigma
        return x

    g = torch.Generator().manual_seed(0)
    _loss(net, y, y, y, generator=g, P_mean=-0.4, P_std=1.2)
    log_sigma = seen["sigma"].log()
    assert abs(float(log_sigma.mean()) + 0.4) < 0.06
    assert abs(float(log_sigma.std()) - 1.2) < 0.05


def test_patches_reuse_one_mean() -> None:
    # On patches the loss of a pointwise denoiser equals the whole-domain loss cut at the
    # same corners, with each member's sigma repeated over its patches.
    y, img_lr, mean = _data(shape=(20, 24))
    offsets = random_patch_offsets((20, 24), (8, 10), 5, torch.Generator().manual_seed(1))
    sigma = torch.tensor([0.2, 7.0])
    noise = torch.randn_like(y)
    whole = _loss(Pointwise(), y, img_lr, mean, sigma=sigma, noise=noise)
    patches = _loss(
        Pointwise(), y, img_lr, mean, offsets=offsets, patch_shape=(8, 10),
        sigma=sigma.repeat_interleave(5), noise=extract_patches(noise, offsets, (8, 10)),
    )  # fmt: skip
    assert patches.shape == (2 * 5, 2, 8, 10)
    torch.testing.assert_close(patches, extract_patches(whole, offsets, (8, 10)))


def test_patched_call_convention() -> None:
    y, img_lr, mean = _data(shape=(20, 24))
    offsets = torch.tensor([[0, 0], [12, 14], [3, 7]])
    seen = {}

    def net(x, condition, sigma, embedding_selector):
        emb = torch.arange(20 * 24.0).reshape(1, 20, 24)
        seen.update(x=x, condition=condition, sigma=sigma, emb=embedding_selector(emb))
        return x

    _loss(net, y, img_lr, mean, offsets=offsets, patch_shape=(8, 10))
    assert seen["x"].shape == (6, 2, 8, 10) and seen["sigma"].shape == (6,)
    assert seen["condition"].shape == (6, 2 + 3 + 3, 8, 10)  # mean, img_lr, global img_lr
    full = torch.arange(20 * 24.0).reshape(1, 1, 20, 24).expand(2, 1, 20, 24)
    assert torch.equal(seen["emb"], extract_patches(full, offsets, (8, 10)))


def _toy_patch_setup(batch: int = 3):
    y, img_lr, mean = _data(batch=batch, shape=(20, 24))
    net = ToyDenoiser(2, 2 + 2 * 3, (20, 24), seed=4)
    return net, y, img_lr, mean


def test_per_member_offsets_shared_equal_the_shared_form() -> None:
    # (B, k, 2) corners that repeat one (k, 2) set give the (k, 2) loss, bit for bit.
    net, y, img_lr, mean = _toy_patch_setup()
    offsets = random_patch_offsets((20, 24), (8, 10), 4, torch.Generator().manual_seed(1))
    shared = _loss(
        net, y, img_lr, mean, offsets=offsets, patch_shape=(8, 10),
        generator=torch.Generator().manual_seed(9),
    )  # fmt: skip
    per_member = _loss(
        net, y, img_lr, mean, offsets=offsets.expand(3, -1, -1), patch_shape=(8, 10),
        generator=torch.Generator().manual_seed(9),
    )  # fmt: skip
    assert per_member.shape == (3 * 4, 2, 8, 10)
    assert torch.equal(per_member, shared)


def test_per_member_offsets_rows_equal_each_member_alone() -> None:
    # Row b * k + j: member b's residual, condition, global img_lr and positional grid, cut
    # at member b's own corner j; the same as the loss of member b alone.
    net, y, img_lr, mean = _toy_patch_setup()
    k = 4
    offsets = random_patch_offsets((20, 24), (8, 10), 3 * k, torch.Generator().manual_seed(2))
    offsets = offsets.reshape(3, k, 2)
    g = torch.Generator().manual_seed(3)
    sigma = (torch.randn(3 * k, generator=g) * 1.2).exp()
    noise = torch.randn(3 * k, 2, 8, 10, generator=g)
    loss = _loss(
        net, y, img_lr, mean, offsets=offsets, patch_shape=(8, 10), sigma=sigma, noise=noise
    )
    assert loss.shape == (3 * k, 2, 8, 10)
    for b in range(3):
        rows = slice(b * k, (b + 1) * k)
        alone = _loss(
            net, y[b : b + 1], img_lr[b : b + 1], mean[b : b + 1], offsets=offsets[b],
            patch_shape=(8, 10), sigma=sigma[rows], noise=noise[rows],
        )  # fmt: skip
        torch.testing.assert_close(loss[rows], alone, rtol=1e-6, atol=1e-6)
    # Not the shared-corner loss of member 0's corners.
    shared = _loss(
        net, y, img_lr, mean, offsets=offsets[0], patch_shape=(8, 10), sigma=sigma, noise=noise
    )
    assert not torch.allclose(loss[k:], shared[k:])


def test_per_member_call_convention() -> None:
    y, img_lr, mean = _data(shape=(20, 24))
    offsets = torch.tensor([[[0, 0], [12, 14], [3, 7]], [[5, 1], [0, 14], [12, 0]]])
    seen = {}

    def net(x, condition, sigma, embedding_selector):
        emb = torch.arange(20 * 24.0).reshape(1, 20, 24)
        seen.update(condition=condition, emb=embedding_selector(emb))
        return x

    _loss(net, y, img_lr, mean, offsets=offsets, patch_shape=(8, 10))
    assert seen["condition"].shape == (6, 2 + 3 + 3, 8, 10)
    full = torch.arange(20 * 24.0).reshape(20, 24)
    resized = torch.nn.functional.interpolate(img_lr, size=(8, 10), mode="bilinear")
    for b in range(2):
        for j, (oy, ox) in enumerate(offsets[b].tolist()):
            row = b * 3 + j
            assert torch.equal(seen["emb"][row, 0], full[oy : oy + 8, ox : ox + 10])
            assert torch.equal(seen["condition"][row, :2], mean[b, :, oy : oy + 8, ox : ox + 10])
            assert torch.equal(seen["condition"][row, 5:], resized[b])


def test_losses_reject_bad_input() -> None:
    y, img_lr, mean = _data()
    net = Pointwise()
    with pytest.raises(ValueError, match="must share rows and spatial shape"):
        regression_loss(ToyRegression(2, 3), y, build_condition(img_lr[:, :, :-1]))
    with pytest.raises(ValueError, match=r"inputs must have shape \(batch, C_in, H, W\)"):
        build_condition(img_lr[0])
    with pytest.raises(ValueError, match=r"mean must have shape \(1 or 2, C_out, 12, 16\)"):
        build_condition(img_lr, mean[:, :, :-1])
    with pytest.raises(ValueError, match=r"must be \(batch, C, H, W\)"):
        residual_loss(net, y[0], build_condition(img_lr, mean))
    with pytest.raises(ValueError, match=r"need x of shape \(3, C, H, W\)"):
        crop_condition(build_condition(img_lr), torch.zeros(3, 1, 2, dtype=torch.long), (4, 4))
    with pytest.raises(ValueError, match=r"sigma must hold 2 noise levels"):
        residual_loss(net, y - mean, build_condition(img_lr, mean), sigma=torch.ones(3))
    with pytest.raises(ValueError, match="noise must have the shape of the residual"):
        residual_loss(net, y - mean, build_condition(img_lr), noise=torch.ones(2, 2, 4, 4))
