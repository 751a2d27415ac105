"""Training-iteration benchmarks: networks + losses + optimizer step (no data loading).

One residual-diffusion iteration as CorrDiff trains it: the regression mean on the whole
domain once (eval, no grad), the EDM loss on ``k`` random patches reusing that mean,
backward, Adam step. The time is per iteration; divide by ``k`` for the time per patch.
``k = 1`` pays the regression forward for every patch, which is what reusing the mean
avoids. CorrDiff-Mini networks on a 64x128 domain with 32x32 patches (CPU sizes).
"""

from __future__ import annotations

import torch

from xcorrdiff.diffusion import random_patch_offsets, regression_loss, residual_loss

from .bench_nn import C_HR, C_LR, mini_diffusion, mini_regression

DOMAIN = (64, 128)
PATCH = (32, 32)


def _networks() -> tuple[torch.nn.Module, torch.nn.Module]:
    reg = mini_regression(64)
    reg = type(reg)(**{**reg.config, "img_resolution": list(DOMAIN)}).eval().requires_grad_(False)
    net = mini_diffusion(64)
    net = type(net)(**{**net.config, "img_resolution": list(DOMAIN)}).train()
    return reg, net


class ResidualIteration:
    """Regression mean once, EDM loss on k patches, backward, Adam step."""

    params = ((1, 4), ("float32", "bfloat16"))
    param_names = ("k", "dtype")
    timeout = 180

    def setup(self, k: int, dtype: str) -> None:
        torch.set_num_threads(1)
        self.reg, self.net = _networks()
        self.opt = torch.optim.Adam(self.net.parameters(), lr=2e-4)
        self.y = torch.randn(1, C_HR, *DOMAIN)
        self.img_lr = torch.randn(1, C_LR, *DOMAIN)
        self.gen = torch.Generator().manual_seed(0)
        self.bf16 = dtype == "bfloat16"

    def time_iteration(self, k: int, dtype: str) -> None:
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            with torch.no_grad():
                mean = self.reg(torch.zeros_like(self.y), self.img_lr)
            offsets = random_patch_offsets(DOMAIN, PATCH, k, generator=self.gen)
            loss = residual_loss(
                self.net, self.y, self.img_lr, mean.float(), offsets=offsets, patch_shape=PATCH
            )
        loss.sum().div(k).backward()
        self.opt.step()


class RegressionIteration:
    """Regression network training step on the whole domain (first CorrDiff stage)."""

    timeout = 180

    def setup(self) -> None:
        torch.set_num_threads(1)
        reg, _ = _networks()
        self.reg = reg.train().requires_grad_(True)
        self.opt = torch.optim.Adam(self.reg.parameters(), lr=2e-4)
        self.y = torch.randn(1, C_HR, *DOMAIN)
        self.img_lr = torch.randn(1, C_LR, *DOMAIN)

    def time_iteration(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        regression_loss(self.reg, self.y, self.img_lr).mean().backward()
        self.opt.step()
