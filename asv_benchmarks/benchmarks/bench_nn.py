"""Network benchmarks: CorrDiff-Mini U-Nets forward/backward, group norm, attention.

The networks use CorrDiff-Mini's topology (64 channels, ``channel_mult [1, 2, 2]``,
4 blocks, attention at the coarsest level, 4 sinusoidal grid channels) with the CWA
inputs and outputs (12 -> 4 channels), at patch sizes small enough for a CPU.
``asv_benchmarks/compare_physicsnemo.py`` times the same workloads against PhysicsNeMo.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

import xcorrdiff.nn as xn
from xcorrdiff.nn.group_norm import GroupNorm
from xcorrdiff.nn.layers import UNetAttention

C_LR, C_HR, N_GRID = 12, 4, 4


def mini_kwargs(resolution: int) -> dict[str, Any]:
    """CorrDiff-Mini network arguments for a ``resolution`` x ``resolution`` domain."""
    return {
        "model_type": "SongUNetPosEmbd",
        "model_channels": 64,
        "channel_mult": [1, 2, 2],
        "attn_resolutions": [resolution >> 2],
        "num_blocks": 4,
        "dropout": 0.13,
        "embedding_type": "zero",
        "gridtype": "sinusoidal",
        "N_grid_channels": N_GRID,
    }


def mini_regression(resolution: int) -> xn.UNet:
    torch.manual_seed(0)
    return xn.UNet(
        img_resolution=resolution,
        img_in_channels=C_LR + N_GRID,
        img_out_channels=C_HR,
        **mini_kwargs(resolution),
    )


def mini_diffusion(resolution: int, patched: bool = True) -> xn.EDMPrecondSuperResolution:
    """Residual diffusion network; ``patched`` adds the global low-res input channels."""
    torch.manual_seed(1)
    cond = C_HR + (2 if patched else 1) * C_LR + N_GRID
    return xn.EDMPrecondSuperResolution(
        img_resolution=resolution,
        img_in_channels=cond,
        img_out_channels=C_HR,
        **mini_kwargs(resolution),
    )


class RegressionForward:
    """Regression U-Net forward (eval, no grad): the conditional mean."""

    params = ((32, 64), ("nchw", "channels_last"))
    param_names = ("size", "layout")
    timeout = 120

    def setup(self, size: int, layout: str) -> None:
        torch.set_num_threads(1)
        self.net = mini_regression(size).eval()
        if layout == "channels_last":
            xn.set_channels_last(self.net)
        self.x = torch.zeros(1, C_HR, size, size)
        self.img_lr = torch.randn(1, C_LR, size, size)

    def time_forward(self, size: int, layout: str) -> None:
        with torch.no_grad():
            self.net(self.x, self.img_lr)

    def peakmem_forward(self, size: int, layout: str) -> None:
        with torch.no_grad():
            self.net(self.x, self.img_lr)


class DiffusionForwardBackward:
    """Diffusion network forward + backward (train mode) on one patch, as in training."""

    params = ((32, 64), ("float32", "bfloat16"))
    param_names = ("patch", "dtype")
    timeout = 120

    def setup(self, patch: int, dtype: str) -> None:
        torch.set_num_threads(1)
        self.net = mini_diffusion(patch).train()
        self.dtype = getattr(torch, dtype)
        self.x = torch.randn(1, C_HR, patch, patch)
        self.cond = torch.randn(1, C_HR + 2 * C_LR, patch, patch)
        self.sigma = torch.ones(1)

    def time_forward_backward(self, patch: int, dtype: str) -> None:
        self.net.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.dtype == torch.bfloat16):
            out = self.net(self.x, self.cond, self.sigma)
        out.float().square().mean().backward()


class DiffusionForward:
    """One denoiser evaluation (eval, no grad): the cost of one sampler step per patch."""

    params = ((32, 64),)
    param_names = ("patch",)
    timeout = 120

    def setup(self, patch: int) -> None:
        torch.set_num_threads(1)
        self.net = mini_diffusion(patch).eval()
        self.x = torch.randn(1, C_HR, patch, patch)
        self.cond = torch.randn(1, C_HR + 2 * C_LR, patch, patch)
        self.sigma = torch.ones(1)

    def time_forward(self, patch: int) -> None:
        with torch.no_grad():
            self.net(self.x, self.cond, self.sigma)


class GroupNormSiLU:
    """Group norm + SiLU at the finest level of a 64x64 patch (64 channels)."""

    params = (("train", "eval", "eval-physicsnemo-formula"),)
    param_names = ("mode",)

    def setup(self, mode: str) -> None:
        torch.set_num_threads(1)
        self.norm = GroupNorm(64, eps=1e-6, act="silu").train(mode == "train")
        self.x = torch.randn(4, 64, 64, 64)

    def time_group_norm_silu(self, mode: str) -> None:
        with torch.no_grad():
            if mode == "eval-physicsnemo-formula":
                # PhysicsNeMo 2.2.2's eval path: explicit unbiased variance, separate passes.
                x = self.x.reshape(4, 16, 4, 64, 64)
                mean = x.mean(dim=[2, 3, 4], keepdim=True)
                var = x.var(dim=[2, 3, 4], keepdim=True)
                x = ((x - mean) * (var + 1e-6).rsqrt()).reshape(4, 64, 64, 64)
                F.silu(
                    x * self.norm.weight.reshape(1, -1, 1, 1) + self.norm.bias.reshape(1, -1, 1, 1)
                )
            else:
                self.norm(self.x)


class Attention:
    """Attention kernel over a 16x16 map (256 pixels, 128 channels): SDPA vs einsum/softmax."""

    params = (("sdpa", "einsum"),)
    param_names = ("kernel",)

    def setup(self, kernel: str) -> None:
        torch.set_num_threads(1)
        self.q, self.k, self.v = torch.randn(3, 4, 1, 256, 128).unbind(0)

    def time_attention(self, kernel: str) -> None:
        q, k, v = self.q, self.k, self.v
        with torch.no_grad():
            if kernel == "sdpa":
                F.scaled_dot_product_attention(q, k, v)
            else:  # PhysicsNeMo <= 1.0's AttentionOp + einsum
                w = torch.einsum("bhqc,bhkc->bhqk", q, k / math.sqrt(q.shape[-1])).softmax(dim=-1)
                torch.einsum("bhqk,bhkc->bhqc", w, v)


class AttentionBlock:
    """The whole attention layer (group norm, qkv, SDPA, projection, residual)."""

    def setup(self) -> None:
        torch.set_num_threads(1)
        self.attn = UNetAttention(out_channels=128, num_heads=1).eval()
        self.x = torch.randn(4, 128, 16, 16)

    def time_attention_layer(self) -> None:
        with torch.no_grad():
            self.attn(self.x)
