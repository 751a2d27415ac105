"""Sampler benchmarks: one Euler step, whole-domain sampling per member, patched sampling.

CorrDiff-Mini networks (see ``bench_nn``) on CPU-sized domains; 12 Euler steps as in the
optimisation write-up for the whole-domain case, fewer for the patched one to keep asv's
runs short. ``members`` measures batching members through the network at once (time per
call; divide by ``members`` for the time per member).
"""

from __future__ import annotations

import torch

from xcorrdiff.diffusion import PatchGrid, edm_sigmas, euler

from .bench_nn import C_HR, C_LR, mini_diffusion


class EulerStep:
    """One sampler step (one denoiser call) on a 32x32 domain."""

    params = ((1, 4),)
    param_names = ("members",)
    timeout = 120

    def setup(self, members: int) -> None:
        torch.set_num_threads(1)
        self.net = mini_diffusion(32, patched=False).eval()
        self.img_lr = torch.randn(members, C_LR, 32, 32)
        self.mean = torch.randn(1, C_HR, 32, 32)
        self.latents = torch.randn(members, C_HR, 32, 32)
        self.sigmas = torch.tensor([10.0, 0.0], dtype=torch.float64)  # one step

    def time_euler_step(self, members: int) -> None:
        euler(self.net, self.img_lr, self.sigmas, latents=self.latents, mean_hr=self.mean)


class WholeDomainSampling:
    """12 Euler steps on a whole 32x32 domain (CWA samples its 448x448 domain whole)."""

    params = ((1, 2),)
    param_names = ("members",)
    timeout = 180

    def setup(self, members: int) -> None:
        torch.set_num_threads(1)
        self.net = mini_diffusion(32, patched=False).eval()
        self.img_lr = torch.randn(members, C_LR, 32, 32)
        self.mean = torch.randn(1, C_HR, 32, 32)
        self.latents = torch.randn(members, C_HR, 32, 32)
        self.sigmas = edm_sigmas(12, sigma_min=0.002, sigma_max=800.0)

    def time_sample(self, members: int) -> None:
        euler(self.net, self.img_lr, self.sigmas, latents=self.latents, mean_hr=self.mean)

    def peakmem_sample(self, members: int) -> None:
        euler(self.net, self.img_lr, self.sigmas, latents=self.latents, mean_hr=self.mean)


class PatchedSampling:
    """4 Euler steps on 64x96 with 32x32 patches (overlap 4, boundary 2): a 3 x 4 grid."""

    timeout = 180

    def setup(self) -> None:
        torch.set_num_threads(1)
        domain = (64, 96)
        self.net = mini_diffusion(64, patched=True).eval()
        # The grid of the positional embedding is the domain's: rebuild at 64x96.
        self.net = type(self.net)(**{**self.net.config, "img_resolution": list(domain)}).eval()
        self.grid = PatchGrid(domain, (32, 32), 4, boundary=2, layout="reflect")
        self.img_lr = torch.randn(1, C_LR, *domain)
        self.mean = torch.randn(1, C_HR, *domain)
        self.latents = torch.randn(1, C_HR, *domain)
        self.sigmas = edm_sigmas(4, sigma_min=0.002, sigma_max=800.0)

    def time_sample_patched(self) -> None:
        euler(
            self.net,
            self.img_lr,
            self.sigmas,
            latents=self.latents,
            mean_hr=self.mean,
            patching=self.grid,
        )
