"""Side by side: xcorrdiff vs PhysicsNeMo 2.2.2 on CorrDiff's training and sampling workloads.

Both libraries run in one process, on the same configuration and the *same weights*: each
PhysicsNeMo module is built first and its ``state_dict`` is loaded into ours with
``strict=True`` (the layouts are key-compatible). Timings alternate between the two
libraries (ours, PhysicsNeMo, PhysicsNeMo, ours, ...) so that load on a shared machine hits
both alike; the table gives the best and the median of ``--repeats`` runs, and the ratio
of the best times.

Cases (``--cases``, default all):

``regression``
    Regression UNet forward (eval, no_grad) on the training domain ``--domain``.
``diffusion``
    Diffusion network forward + backward (train mode) on ``--batch`` patches; per patch.
``train``
    One training iteration of the residual diffusion model with ``--k`` cached patches:
    regression mean on the whole domain once (no grad), EDM loss on ``k`` random patches,
    backward, Adam step. Ours: :func:`xcorrdiff.diffusion.residual_loss` with
    ``offsets``; PhysicsNeMo: ``ResidualLoss(hr_mean_conditioning=True)`` with
    ``RandomPatching2D(patch_num=k)`` and ``use_patch_grad_acc=True``. ms/patch and patches/s.
``sample``
    Euler sampling (``--steps``, default 12) of ``--members`` members on the whole
    ``--sample-domain``: :func:`xcorrdiff.diffusion.euler` vs ``deterministic_sampler(
    solver="euler")``.
``sample-patched``
    The same on ``--domain`` with ``--patch`` patches, overlap 4 and boundary 2:
    :class:`~xcorrdiff.diffusion.PatchGrid` (``layout="reflect"``) vs ``GridPatching2D``.

Run from the repository root, in an environment with both libraries (PhysicsNeMo is never a
dependency of xcorrdiff)::

    PYTHONPATH=tests/fixtures/stubs .venv-pnm/bin/python asv_benchmarks/compare_physicsnemo.py \\
        --config mini --device cpu --threads 1 --cases regression diffusion

    # GPU session, CWA sizes (1056x1792 domain, 448x448 patches, k = 16), bf16, compiled:
    python asv_benchmarks/compare_physicsnemo.py --config cwa --device cuda --bf16 --compile

Peak memory: ``torch.cuda.max_memory_allocated`` on CUDA; on CPU the growth of the
process's resident set during one call (sampled every millisecond after ``malloc_trim``),
an approximation. FLOPs (``--flops``, default on CUDA) come from
:class:`torch.utils.flop_counter.FlopCounterMode` on our side and give the achieved TFLOP/s
and its fraction of ``--peak-tflops`` (790 TFLOP/s, bf16 dense, the issue's roofline).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

warnings.filterwarnings("ignore")

CONFIGS: dict[str, dict[str, Any]] = {
    # CorrDiff-Mini topology (HRRR-Mini) with the CWA inputs/outputs (12 -> 4 channels).
    # Sizes are the CWA ones divided by about 7 (448 -> 64) so that CPU runs stay short:
    # a 160x256 "CONUS-like" domain holds the same 3 x 5 grid of patches as 1056x1792.
    "mini": {
        "model_channels": 64,
        "channel_mult": [1, 2, 2],
        "num_blocks": 4,
        "dropout": 0.13,
        "regression_embedding": "zero",
        "diffusion_embedding": "zero",
        "domain": (160, 256),
        "patch": (64, 64),
        "sample_domain": (64, 64),
        "k": 16,
    },
    # CWA / CONUS sizes of the optimisation write-up (H100: 61.85 ms per training patch).
    "cwa": {
        "model_channels": 128,
        "channel_mult": [1, 2, 2, 2, 2],
        "num_blocks": 4,
        "dropout": 0.13,
        "regression_embedding": "zero",
        "diffusion_embedding": "positional",
        "domain": (1056, 1792),
        "patch": (448, 448),
        "sample_domain": (448, 448),
        "k": 16,
    },
}
C_LR, C_HR, N_GRID = 12, 4, 4
OVERLAP, BOUNDARY = 4, 2
SIGMA_MIN, SIGMA_MAX = 0.002, 800.0
ALL_CASES = ("regression", "diffusion", "train", "sample", "sample-patched")


# -- measurement helpers -------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _malloc_trim() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextlib.contextmanager
def _peak_memory(device: torch.device) -> Iterator[dict[str, int]]:
    """Peak bytes allocated during the block (CUDA) or RSS growth (CPU, sampled)."""
    result = {"peak": 0}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        yield result
        torch.cuda.synchronize(device)
        result["peak"] = torch.cuda.max_memory_allocated(device) - base
        return
    _malloc_trim()
    base = _rss_bytes()
    peak = [base]
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.001)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()
        result["peak"] = max(peak[0], _rss_bytes()) - base


@dataclass
class Side:
    """Timings of one library on one case."""

    times: list[float] = field(default_factory=list)
    warmup: float = math.nan
    peak_bytes: int = 0

    @property
    def best(self) -> float:
        return min(self.times) if self.times else math.nan

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else math.nan


@dataclass
class Result:
    case: str
    size: str
    per: int  # divide times by this (patches or members)
    ours: Side
    pnm: Side
    max_diff: float = math.nan
    flops: float = math.nan  # per call, ours
    note: str = ""


def _measure(
    fns: dict[str, Callable[[], Any]],
    device: torch.device,
    repeats: int,
    memory: bool,
    compiled: bool,
) -> tuple[dict[str, Side], dict[str, Any]]:
    """Warm up each side once (its output is returned), then time them alternately."""
    sides = {name: Side() for name in fns}
    outputs = {}
    for name, fn in fns.items():
        # The warm-up call (compilation included) doubles as the memory pass when eager.
        tracker: contextlib.AbstractContextManager[dict[str, int]] = (
            _peak_memory(device) if memory and not compiled else contextlib.nullcontext({})
        )
        with tracker as mem:
            start = time.perf_counter()
            outputs[name] = fn()
            _sync(device)
            sides[name].warmup = time.perf_counter() - start
        sides[name].peak_bytes = mem.get("peak", 0)
    names = list(fns)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            _sync(device)
            start = time.perf_counter()
            fns[name]()
            _sync(device)
            sides[name].times.append(time.perf_counter() - start)
    if memory and compiled:
        for name, fn in fns.items():
            with _peak_memory(device) as mem:
                fn()
            sides[name].peak_bytes = mem["peak"]
    return sides, outputs


def _max_diff(outputs: dict[str, Any]) -> float:
    """max |ours - PhysicsNeMo| / max |PhysicsNeMo| of the warm-up outputs."""
    ours, pnm = outputs["ours"], outputs["pnm"]
    if not isinstance(ours, torch.Tensor):
        return math.nan
    ref = pnm.detach().double()
    return float((ours.detach().double() - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


def _count_flops(fn: Callable[[], Any]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


# -- networks --------------------------------------------------------------------------------


def _unet_kwargs(cfg: dict[str, Any], resolution: tuple[int, int], embedding: str) -> dict:
    levels = len(cfg["channel_mult"])
    return {
        "model_type": "SongUNetPosEmbd",
        "model_channels": cfg["model_channels"],
        "channel_mult": cfg["channel_mult"],
        # Attention at the coarsest level (16 for HRRR-Mini's 64, 28 for CWA's 448).
        "attn_resolutions": [resolution[0] >> (levels - 1)],
        "num_blocks": cfg["num_blocks"],
        "dropout": cfg["dropout"],
        "embedding_type": embedding,
        "gridtype": "sinusoidal",
        "N_grid_channels": N_GRID,
        # PhysicsNeMo refuses autocast unless its modules are built with amp_mode=True.
        "amp_mode": bool(cfg.get("amp_mode", False)),
        # NVIDIA apex's fused NHWC GroupNorm(+SiLU) in both, when it imports (CUDA only).
        "use_apex_gn": bool(cfg.get("use_apex_gn", False)),
    }


def _pair_modules(
    kind: str,
    resolution: tuple[int, int],
    in_channels: int,
    cfg: dict[str, Any],
    device: torch.device,
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Build PhysicsNeMo's module, then ours with its weights (strict)."""
    from physicsnemo.diffusion.preconditioners.legacy import EDMPrecondSuperResolution
    from physicsnemo.models.diffusion_unets import UNet

    import xcorrdiff.nn as xn

    if kind == "regression":
        kwargs = _unet_kwargs(cfg, resolution, cfg["regression_embedding"])
        theirs = UNet(
            img_resolution=list(resolution),
            img_in_channels=in_channels,
            img_out_channels=C_HR,
            **kwargs,
        )
        ours: torch.nn.Module = xn.UNet(
            img_resolution=list(resolution),
            img_in_channels=in_channels,
            img_out_channels=C_HR,
            **kwargs,
        )
    else:
        kwargs = _unet_kwargs(cfg, resolution, cfg["diffusion_embedding"])
        theirs = EDMPrecondSuperResolution(
            img_resolution=list(resolution),
            img_in_channels=in_channels,
            img_out_channels=C_HR,
            **kwargs,
        )
        ours = xn.EDMPrecondSuperResolution(
            img_resolution=list(resolution),
            img_in_channels=in_channels,
            img_out_channels=C_HR,
            **kwargs,
        )
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours.to(device), theirs.to(device)


def _describe_machine(device: torch.device) -> str:
    model = platform.processor() or "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    text = f"CPU {model}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    if device.type == "cuda":
        text += f", GPU {torch.cuda.get_device_name(device)}"
    return text


# -- main ------------------------------------------------------------------------------------


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", choices=sorted(CONFIGS), default="mini")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--domain", type=int, nargs=2, help="training / patched-sampling domain (H W)")
    p.add_argument("--patch", type=int, nargs=2, help="patch shape (H W)")
    p.add_argument("--sample-domain", type=int, nargs=2, help="whole-domain sampling (H W)")
    p.add_argument("--k", type=int, help="patches per regression mean in the training iteration")
    p.add_argument("--batch", type=int, default=1, help="patches per diffusion fwd+bwd")
    p.add_argument("--members", type=int, default=1, help="ensemble members to sample")
    p.add_argument(
        "--member-batch",
        type=int,
        help="members per sampler call (default: all); bounds memory, e.g. 32 members at CWA sizes",
    )
    p.add_argument("--steps", type=int, default=12, help="Euler steps")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--cases", nargs="+", choices=ALL_CASES, default=list(ALL_CASES))
    p.add_argument("--compile", action="store_true", help="torch.compile both libraries' networks")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast in both libraries")
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ours in channels-last layout (default: on for CUDA, off for CPU)",
    )
    p.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    p.add_argument("--flops", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--peak-tflops", type=float, default=790.0, help="roofline for the fraction")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the results to this file")
    return p.parse_args()


def main() -> None:
    args = _parse()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = {**CONFIGS[args.config], "amp_mode": args.bf16, "use_apex_gn": False}
    if device.type == "cuda":
        from physicsnemo.nn.module import group_norm as pnm_group_norm

        cfg["use_apex_gn"] = bool(getattr(pnm_group_norm, "_is_apex_available", False))
    domain = tuple(args.domain or cfg["domain"])
    patch = tuple(args.patch or cfg["patch"])
    sample_domain = tuple(args.sample_domain or cfg["sample_domain"])
    k = args.k or cfg["k"]
    channels_last = args.channels_last if args.channels_last is not None else device.type == "cuda"
    flops = args.flops if args.flops is not None else device.type == "cuda"
    memory = not args.no_memory

    from physicsnemo.diffusion.metrics.legacy_losses import ResidualLoss
    from physicsnemo.diffusion.multi_diffusion import GridPatching2D, RandomPatching2D
    from physicsnemo.diffusion.samplers.legacy_deterministic_sampler import deterministic_sampler

    import xcorrdiff.nn as xn
    from xcorrdiff.diffusion import (
        Denoiser,
        PatchGrid,
        build_condition,
        crop_condition,
        edm_sigmas,
        euler,
        extract_patches,
        random_patch_offsets,
        regression_mean,
        residual_loss,
    )

    def autocast() -> contextlib.AbstractContextManager[Any]:
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)

    # PhysicsNeMo's bf16 is autocast too, but some of its wrappers reject CPU autocast
    # (``torch.is_autocast_enabled()`` only looks at CUDA); then it runs in float32, its
    # best option that works, and the table says so.
    pnm_bf16 = {"enabled": args.bf16}
    pnm_notes: list[str] = []

    def pnm_autocast() -> contextlib.AbstractContextManager[Any]:
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=pnm_bf16["enabled"])

    def pnm_fallback(fn: Callable[[], Any]) -> Callable[[], Any]:
        state = {"enabled": args.bf16}

        def run() -> Any:
            pnm_bf16["enabled"] = state["enabled"]
            try:
                return fn()
            except (RuntimeError, ValueError) as exc:
                if not state["enabled"]:
                    raise
                state["enabled"] = pnm_bf16["enabled"] = False
                pnm_notes.append(f"{fn.__name__}: {str(exc)[:100]}")
                return fn()

        return run

    def ours_options(module: torch.nn.Module) -> torch.nn.Module:
        if channels_last:
            xn.set_channels_last(module)
        if args.compile:
            xn.maybe_compile(module)
        return module

    def pnm_options(module: torch.nn.Module) -> torch.nn.Module:
        # PhysicsNeMo's own switch (training.perf.torch_compile): torch.compile the model.
        return torch.compile(module) if args.compile else module  # type: ignore[return-value]

    gen = torch.Generator().manual_seed(args.seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=gen).to(device)

    load_before = os.getloadavg()
    results: list[Result] = []
    full = {"mini": ((1056, 1792), (448, 448), (448, 448)), "cwa": (None, None, None)}[args.config]
    reduced = args.config == "mini" or any(
        v is not None for v in (args.domain, args.patch, args.sample_domain)
    )

    # Regression network on the training domain; diffusion network for patches of it.
    need_reg = {"regression", "train"} & set(args.cases)
    need_patch_net = {"diffusion", "train", "sample-patched"} & set(args.cases)
    if need_reg:
        reg_o, reg_p = _pair_modules("regression", domain, C_LR + N_GRID, cfg, device)
        reg_o.eval().requires_grad_(False)
        reg_p.eval().requires_grad_(False)
        reg_o = ours_options(reg_o)
        reg_p_run = pnm_options(reg_p)
    if need_patch_net:
        in_patch = C_HR + 2 * C_LR + N_GRID
        net_o, net_p = _pair_modules("diffusion", domain, in_patch, cfg, device)
        net_o = ours_options(net_o)
        net_p_run = pnm_options(net_p)

    img_lr = randn(1, C_LR, *domain)
    y = randn(1, C_HR, *domain)

    if "regression" in args.cases:
        zeros = torch.zeros(1, C_HR, *domain, device=device)

        def reg_ours() -> torch.Tensor:
            with torch.no_grad(), autocast():
                return reg_o(zeros, img_lr)

        @pnm_fallback
        def reg_pnm() -> torch.Tensor:
            with torch.no_grad(), pnm_autocast():
                return reg_p_run(zeros, img_lr)

        sides, outs = _measure(
            {"ours": reg_ours, "pnm": reg_pnm}, device, args.repeats, memory, args.compile
        )
        res = Result(
            "regression forward",
            f"{domain[0]}x{domain[1]}",
            1,
            sides["ours"],
            sides["pnm"],
            _max_diff(outs),
        )
        if flops:
            res.flops = _count_flops(reg_ours)
        results.append(res)
        print(f"  done: {res.case}", flush=True)

    if "diffusion" in args.cases:
        b = args.batch
        x = randn(b, C_HR, *patch).requires_grad_(False)
        cond = randn(b, C_HR + 2 * C_LR, *patch)
        sigma = torch.full((b,), 1.0, device=device)
        rows = torch.arange(patch[0], device=device)
        cols = torch.arange(patch[1], device=device)
        index = torch.stack(torch.meshgrid(rows, cols, indexing="ij"))[None]  # patch at (0, 0)

        def fwd_bwd(net: torch.nn.Module, ours: bool) -> Callable[[], None]:
            def run() -> None:
                net.train()
                net.zero_grad(set_to_none=True)
                with autocast() if ours else pnm_autocast():
                    out = net(x, cond, sigma, global_index=index)
                out.float().square().mean().backward()

            return run if ours else pnm_fallback(run)

        sides, _ = _measure(
            {"ours": fwd_bwd(net_o, True), "pnm": fwd_bwd(net_p_run, False)},
            device,
            args.repeats,
            memory,
            args.compile,
        )
        res = Result(
            "diffusion fwd+bwd / patch",
            f"{b}x{patch[0]}x{patch[1]}",
            b,
            sides["ours"],
            sides["pnm"],
        )
        if flops:
            res.flops = _count_flops(fwd_bwd(net_o, True))
        results.append(res)
        print(f"  done: {res.case}", flush=True)

    if "train" in args.cases:
        opt_o = torch.optim.Adam(net_o.parameters(), lr=2e-4)
        opt_p = torch.optim.Adam(net_p.parameters(), lr=2e-4)
        loss_fn = ResidualLoss(regression_net=reg_p_run, hr_mean_conditioning=True)
        patching = RandomPatching2D(img_shape=domain, patch_shape=patch, patch_num=k).to(device)
        train_gen = torch.Generator(device=device).manual_seed(args.seed + 1)

        def train_ours() -> None:
            net_o.train()
            opt_o.zero_grad(set_to_none=True)
            with torch.no_grad(), autocast():
                # once per sample, reused by the k patches
                mean = regression_mean(reg_o, build_condition(img_lr), y.shape[1]).float()
            offsets = random_patch_offsets(domain, patch, k, generator=train_gen)
            condition = crop_condition(build_condition(img_lr, mean), offsets, patch)
            with autocast():
                residual = extract_patches(y - mean, offsets, patch)
                loss = residual_loss(net_o, residual, condition)
            loss.sum().div(k).backward()
            opt_o.step()

        @pnm_fallback
        def train_pnm() -> None:
            net_p.train()
            opt_p.zero_grad(set_to_none=True)
            loss_fn.y_mean = None  # new sample: one regression forward for the k patches
            patching.reset_patch_indices()
            with pnm_autocast():
                loss = loss_fn(net_p_run, y, img_lr, patching=patching, use_patch_grad_acc=True)
            loss.sum().div(k).backward()
            opt_p.step()

        sides, _ = _measure(
            {"ours": train_ours, "pnm": train_pnm}, device, args.repeats, memory, args.compile
        )
        res = Result(
            f"training iteration / patch (k={k})",
            f"{domain[0]}x{domain[1]}, {patch[0]}x{patch[1]}",
            k,
            sides["ours"],
            sides["pnm"],
        )
        if flops:
            res.flops = _count_flops(train_ours)
        results.append(res)
        print(f"  done: {res.case}", flush=True)

    def sampling_case(name: str, shape: tuple[int, int], patched: bool) -> None:
        m = args.members
        if patched:
            # Same weights again (the training case has stepped both optimizers).
            net_o.load_state_dict(net_p.state_dict())
            s_net_o, s_net_p = net_o, net_p_run
            grid_o = PatchGrid(shape, patch, OVERLAP, boundary=BOUNDARY, layout="reflect")
            grid_p = GridPatching2D(
                img_shape=shape, patch_shape=patch, overlap_pix=OVERLAP, boundary_pix=BOUNDARY
            )
            size = f"{shape[0]}x{shape[1]}, {grid_o.num_patches} patches {patch[0]}x{patch[1]}"
        else:
            s_net_o, s_net_p = _pair_modules("diffusion", shape, C_HR + C_LR + N_GRID, cfg, device)
            s_net_o, s_net_p = ours_options(s_net_o), pnm_options(s_net_p)
            grid_o, grid_p = None, None
            size = f"{shape[0]}x{shape[1]}"
        s_net_o.eval()
        s_net_p.eval()
        lr = randn(m, C_LR, *shape)
        mean = randn(1, C_HR, *shape)
        latents = randn(m, C_HR, *shape)
        sigmas = edm_sigmas(
            args.steps, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, net=s_net_o, device=device
        )

        # Members go through the network --member-batch at a time (all at once by default).
        chunks = [
            slice(i, i + (args.member_batch or m)) for i in range(0, m, args.member_batch or m)
        ]

        def ours() -> torch.Tensor:
            with autocast():
                return torch.cat([
                    euler(
                        Denoiser(s_net_o, build_condition(lr[c], mean), grid=grid_o),
                        latents[c].to(sigmas.dtype) * sigmas[0],
                        sigmas,
                    )
                    for c in chunks
                ])  # fmt: skip

        @pnm_fallback
        def pnm() -> torch.Tensor:
            with torch.no_grad(), pnm_autocast():
                return torch.cat([
                    deterministic_sampler(
                        s_net_p, latents[c], lr[c], mean_hr=mean, patching=grid_p,
                        num_steps=args.steps, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX,
                        solver="euler",
                    )
                    for c in chunks
                ])  # fmt: skip

        sides, outs = _measure(
            {"ours": ours, "pnm": pnm}, device, args.repeats, memory, args.compile
        )
        res = Result(name, size, m, sides["ours"], sides["pnm"], _max_diff(outs))
        if flops:
            res.flops = _count_flops(ours)
        results.append(res)
        print(f"  done: {res.case}", flush=True)

    if "sample" in args.cases:
        sampling_case(f"sampling {args.steps} Euler steps / member", sample_domain, patched=False)
    if "sample-patched" in args.cases:
        sampling_case(f"patched sampling {args.steps} steps / member", domain, patched=True)

    load_after = os.getloadavg()
    for note in pnm_notes:
        print(
            f"NOTE: PhysicsNeMo ran in float32, its bf16 autocast fails on {device.type} ({note})"
        )
    _print_table(args, cfg, results, device, channels_last, load_before, load_after, reduced, full)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "args": vars(args),
                    "machine": _describe_machine(device),
                    "load": [load_before, load_after],
                    "results": [
                        {
                            "case": r.case,
                            "size": r.size,
                            "per": r.per,
                            "ours_s": r.ours.times,
                            "pnm_s": r.pnm.times,
                            "ours_warmup_s": r.ours.warmup,
                            "pnm_warmup_s": r.pnm.warmup,
                            "ours_peak_bytes": r.ours.peak_bytes,
                            "pnm_peak_bytes": r.pnm.peak_bytes,
                            "max_abs_diff": r.max_diff,
                            "flops": r.flops,
                        }
                        for r in results
                    ],
                },
                f,
                indent=1,
            )


def _print_table(
    args: argparse.Namespace,
    cfg: dict[str, Any],
    results: list[Result],
    device: torch.device,
    channels_last: bool,
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
    reduced: bool,
    full: tuple[Any, ...],
) -> None:
    print()
    print(f"machine: {_describe_machine(device)}")
    print(f"load average (1/5/15 min): before {load_before}, after {load_after}")
    print(
        f"config {args.config}: {cfg['model_channels']} channels, {cfg['channel_mult']}, "
        f"{cfg['num_blocks']} blocks, attention at the coarsest level, {N_GRID} sinusoidal grid "
        f"channels, {C_LR} -> {C_HR} channels; options: "
        f"{'bf16 autocast' if args.bf16 else 'float32'}, "
        f"{'torch.compile (both)' if args.compile else 'eager'}, "
        f"ours {'channels-last' if channels_last else 'NCHW'}, "
        f"apex GroupNorm {'on' if cfg.get('use_apex_gn') else 'off'}; "
        f"best / median of {args.repeats}, interleaved"
    )
    if reduced and args.config == "mini":
        print(
            "NOTE: reduced CPU sizes; the issue's sizes are a 1056x1792 domain, 448x448 patches "
            "and a 448x448 whole-domain sample (run with --config cwa on a GPU)"
        )
    header = (
        f"{'case':<40}{'size':<30}{'ours ms':>16}{'PNM ms':>16}{'ours/PNM':>9}{'speed-up':>9}"
        f"{'mem MiB ours/PNM':>20}{'warm-up s':>13}{'rel.diff':>10}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        o, p = r.ours, r.pnm
        ratio = o.best / p.best
        ms = f"{1e3 * o.best / r.per:.1f}/{1e3 * o.median / r.per:.1f}"
        ms_p = f"{1e3 * p.best / r.per:.1f}/{1e3 * p.median / r.per:.1f}"
        mem = f"{o.peak_bytes / 2**20:.0f}/{p.peak_bytes / 2**20:.0f}"
        warm = f"{o.warmup:.1f}/{p.warmup:.1f}"
        diff = "" if math.isnan(r.max_diff) else f"{r.max_diff:.1e}"
        print(
            f"{r.case:<40}{r.size:<30}{ms:>16}{ms_p:>16}{ratio:>9.2f}{1 / ratio:>8.2f}x"
            f"{mem:>20}{warm:>13}{diff:>10}"
        )
        if "training" in r.case:
            print(
                f"{'  throughput [patches/s]':<70}{r.per / o.best:>16.2f}{r.per / p.best:>16.2f}"
                f"{p.best / o.best:>9.2f}"
            )
        if not math.isnan(r.flops):
            achieved = r.flops / o.best / 1e12
            fraction = achieved / args.peak_tflops if device.type == "cuda" else math.nan
            print(
                f"{'  ours: FLOPs per call, TFLOP/s, roofline':<70}{r.flops:>16.3e}{achieved:>16.3f}"
                f"{'' if math.isnan(fraction) else f'{100 * fraction:.1f}%':>9}"
            )
    print("ms columns: best/median per patch (or member); ours/PNM: ratio of best times;")
    print("rel.diff: max |ours - PNM| / max |PNM| of the outputs (same weights and inputs);")
    print("warm-up: the first call in s, ours/PNM (includes torch.compile with --compile).")


if __name__ == "__main__":
    main()
