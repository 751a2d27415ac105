"""How much memory this machine (or a GPU) has: the budget estimates are checked against.

Pure Python (torch is imported only to ask a CUDA device), so every layer may use it.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["device_memory", "format_bytes", "physical_memory"]


def physical_memory() -> int:
    """Bytes of physical memory of this machine (a large number where it cannot be read)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):  # not POSIX
        return 1 << 50


def device_memory(device: Any) -> int:
    """Bytes of memory of ``device``: the GPU's total for CUDA, else the machine's."""
    if getattr(device, "type", str(device).split(":")[0]) == "cuda":
        import torch

        return int(torch.cuda.get_device_properties(torch.device(device)).total_memory)
    return physical_memory()


def format_bytes(n: float) -> str:
    """``1536`` → ``'1.5 KiB'``: binary units, three significant figures."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.3g} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
