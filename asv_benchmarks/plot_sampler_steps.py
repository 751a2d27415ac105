"""The sampler grid's plot: fair CRPS and spread/skill by network evaluations (NFE).

Reads the tables ``sampler_steps.py --csv`` writes (any number: a grid measured in several
runs; a row label seen twice keeps its first row) and draws, for each sampler, its fair
CRPS and its spread/skill (the mean over the outputs, the range shaded) against its NFE,
with the oracle ensemble's fair CRPS as the floor, the sampler rule's 0.85–1.15 band, and
single rows (the distilled student, calibrated or bfloat16 rows) as labelled points. The
CRPS axis stops at :data:`CRPS_SPAN` times the least fair CRPS.

Usage::

    python asv_benchmarks/plot_sampler_steps.py docs/_static/samplers/*.csv \
        --out docs/_static/samplers/known_truth.png
"""

from __future__ import annotations

import argparse
import ast
import csv
from pathlib import Path

import numpy as np

#: The sampler rule's spread/skill band (issue 26: cheapest within 2 % of the best CRPS).
BAND = (0.85, 1.15)
#: The CRPS axis ends this factor above the least fair CRPS drawn (rows above it, the
#: one- and two-evaluation rows of a grid, are off the plot; the table has them).
CRPS_SPAN = 1.3
#: The NFE axis's ticks: the issue's set of evaluation counts.
TICKS = (1, 2, 3, 4, 6, 8, 12, 18, 24, 36)


def read_rows(paths: list[Path]) -> list[dict]:
    """The rows of ``paths`` in order, the first of each label kept; ``spread_skill`` as a
    list of floats and ``nfe`` as an int (None for the oracle)."""
    rows, seen = [], set()
    for path in paths:
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                if row["label"] in seen:
                    continue
                seen.add(row["label"])
                ratios = ast.literal_eval(row["spread_skill"])
                rows.append({
                    "label": row["label"], "nfe": int(row["nfe"]) if row["nfe"] else None,
                    "crps_fair": float(row["crps_fair"]),
                    "spread_skill": [float(v) for v in ratios],
                })  # fmt: skip
    return rows


def series(rows: list[dict]) -> tuple[dict[str, list[dict]], list[dict]]:
    """Rows ``"<sampler> <steps>"`` grouped by sampler of :data:`~xcorrdiff.config.SAMPLERS`
    (sorted by NFE), and the others (the oracle, the student, rows with a note after the
    steps)."""
    from xcorrdiff.config import SAMPLERS

    lines: dict[str, list[dict]] = {}
    points = []
    for row in rows:
        parts = row["label"].split(" ")
        if len(parts) == 2 and parts[0] in SAMPLERS and parts[1].isdigit():
            lines.setdefault(parts[0], []).append(row)
        else:
            points.append(row)
    return {k: sorted(v, key=lambda r: r["nfe"]) for k, v in lines.items()}, points


def draw(rows: list[dict], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines, points = series(rows)
    fig, (crps_ax, ratio_ax) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for name, group in lines.items():
        nfe = [r["nfe"] for r in group]
        ratios = np.array([r["spread_skill"] for r in group])
        (line,) = crps_ax.plot(nfe, [r["crps_fair"] for r in group], "o-", ms=3, label=name)
        ratio_ax.plot(nfe, ratios.mean(axis=1), "o-", ms=3, color=line.get_color(), label=name)
        ratio_ax.fill_between(nfe, ratios.min(axis=1), ratios.max(axis=1),
                              color=line.get_color(), alpha=0.15)  # fmt: skip
    for i, row in enumerate(points):
        if row["nfe"] is None:  # the oracle ensemble: the floor
            crps_ax.axhline(row["crps_fair"], color="k", ls=":", lw=1, label=row["label"])
            continue
        ratio, color = np.array(row["spread_skill"]), f"C{(len(lines) + i) % 10}"
        crps_ax.plot(row["nfe"], row["crps_fair"], "*", ms=10, color=color, label=row["label"])
        bar = [[ratio.mean() - ratio.min()], [ratio.max() - ratio.mean()]]
        ratio_ax.errorbar(row["nfe"], ratio.mean(), yerr=bar, fmt="*", ms=10, color=color,
                          label=row["label"])  # fmt: skip
    ratio_ax.axhspan(*BAND, color="0.85", zorder=0, label=f"rule's band {BAND[0]}–{BAND[1]}")
    ratio_ax.axhline(1.0, color="k", lw=0.8)
    ylabels = ("fair CRPS (mean of the outputs)",
               "spread/skill (mean; shading: range of the outputs)")  # fmt: skip
    for ax, ylabel in zip((crps_ax, ratio_ax), ylabels, strict=True):
        ax.set_xscale("log", base=2)
        ax.set_xticks(TICKS, labels=[str(t) for t in TICKS])
        ax.set_xlabel("network evaluations per member (NFE)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    crps_ax.set_ylim(top=CRPS_SPAN * min(r["crps_fair"] for r in rows))
    crps_ax.legend(fontsize=7)
    ratio_ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("csv", type=Path, nargs="+", help="tables of sampler_steps.py --csv")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--title", default="samplers on held-out known truth")
    args = parser.parse_args()
    draw(read_rows(args.csv), args.out, args.title)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
