"""Compare the scores of two demo runs: they must agree to the digits the demo prints.

Usage: python .ci/compare_demo.py DIR_A DIR_B (each a folder `xcorrdiff demo` wrote).
The tables print four decimals; scores that differ by more than one unit there (or by a
relative 1e-3, for the large ones) fail with the differing scores listed.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path


def scores(folder: str) -> dict[tuple[str, str], float]:
    record = json.loads((Path(folder) / "xcorrdiff-demo.json").read_text())
    return {(v, m): x for v, row in record["scores"].items() for m, x in row.items()}


def main(a: str, b: str) -> int:
    first, second = scores(a), scores(b)
    if first.keys() != second.keys():
        print(f"the two runs scored different things: {sorted(first.keys() ^ second.keys())}")
        return 1
    differ = [
        f"{v} {m}: {first[v, m]:.6g} vs {second[v, m]:.6g}"
        for v, m in sorted(first)
        if not math.isclose(first[v, m], second[v, m], rel_tol=1e-3, abs_tol=1e-4)
    ]
    if differ:
        print("the demo's scores depend on the CPU's instruction set:\n  " + "\n  ".join(differ))
        return 1
    print(f"demo smoke: {len(first)} scores agree with and without the newest instruction sets")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
