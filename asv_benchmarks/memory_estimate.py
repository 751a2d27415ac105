"""Measured peak memory of one diffusion forward pass against xcorrdiff's estimate.

Each case runs in its own process (one torch thread, CPU, inference mode): the resident
set size before the forward pass and the peak after it give the measured increase, which
is compared with ``batch * xcorrdiff.inference.memory.activation_bytes(...)``. The estimate
is meant as a lower bound (the ratio measured / estimate stays >= 1).

Usage::

    python asv_benchmarks/memory_estimate.py            # prints a Markdown table
"""

from __future__ import annotations

import gc
import os
import resource
import subprocess
import sys

CASES = [
    ("tiny", 128, 8),
    ("mini", 64, 16),
    ("normal", 128, 2),
    ("normal", 224, 1),
    ("normal", 448, 1),
]


def measure(preset: str, side: int, batch: int) -> tuple[float, float]:
    """``(measured MiB, estimated MiB)`` of one forward pass, in this process."""
    import torch

    from xcorrdiff.inference.memory import activation_bytes
    from xcorrdiff.train import build_diffusion
    from xcorrdiff.train.config import TrainConfig

    torch.set_num_threads(1)
    net = build_diffusion(TrainConfig(preset=preset), shape=(side, side), in_channels=12,
                          out_channels=4).eval()  # fmt: skip
    x = torch.randn(batch, 4, side, side)
    condition = torch.randn(batch, 4 + 24, side, side)
    sigma = torch.ones(batch)
    gc.collect()
    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    with torch.inference_mode():
        net(x, condition, sigma)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return (peak - rss) / 2**20, batch * activation_bytes(net.config, (side, side)) / 2**20


def main() -> None:
    print("| preset | pixels | batch | measured peak increase | estimate | measured / estimate |")
    print("|---|---|---|---|---|---|")
    for preset, side, batch in CASES:
        code = f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); " \
               f"from memory_estimate import measure; print(*measure({preset!r}, {side}, {batch}))"  # fmt: skip
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
        measured, estimate = map(float, out.stdout.split())
        print(f"| {preset} | {side}x{side} | {batch} | {measured:.0f} MiB | {estimate:.0f} MiB | "
              f"{measured / estimate:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
