"""The sampler grid's plot (``asv_benchmarks/plot_sampler_steps.py``): it reads the tables
``sampler_steps.py --csv`` writes, keeps each row once, and tells a sampler's curve from
single rows (the oracle, the student, calibrated rows)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "asv_benchmarks"))
import plot_sampler_steps as plot

FIELDS = ["label", "nfe", "crps", "crps_fair", "spread_skill", "rank_flatness", "power"]


def _table(path: Path, rows: list[tuple[str, str, float, list[float]]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        for label, nfe, fair, ratios in rows:  # as sampler_steps.py writes them
            writer.writerow({"label": label, "nfe": nfe, "crps": fair + 0.01,
                             "crps_fair": fair, "spread_skill": str(ratios),
                             "rank_flatness": 0.1, "power": 1.0})  # fmt: skip
    return path


def test_rows_are_read_once_and_grouped_by_sampler(tmp_path: Path) -> None:
    first = _table(tmp_path / "a.csv", [
        ("oracle", "", 0.25, [1.0, 1.0]), ("euler 12", "12", 0.29, [0.8, 0.7]),
        ("euler 4", "4", 0.31, [0.5, 0.4]), ("dpmpp_2m 4", "4", 0.289, [0.9, 0.8]),
    ])  # fmt: skip
    second = _table(tmp_path / "b.csv", [
        ("oracle", "", 0.5, [2.0, 2.0]), ("euler 12", "12", 0.5, [2.0, 2.0]),
        ("euler 24", "24", 0.2875, [0.9, 0.85]),
        ("dpmpp_2m 4, noise ×1.1/1.2", "4", 0.2885, [1.0, 0.95]),
        ("student 2", "2", 0.2893, [1, 1]),
    ])  # fmt: skip
    rows = plot.read_rows([first, second])
    assert [r["label"] for r in rows].count("euler 12") == 1
    assert next(r for r in rows if r["label"] == "oracle")["crps_fair"] == 0.25  # the first kept
    lines, points = plot.series(rows)
    assert [r["nfe"] for r in lines["euler"]] == [4, 12, 24]  # sorted by NFE
    assert [r["label"] for r in lines["dpmpp_2m"]] == ["dpmpp_2m 4"]
    assert [r["label"] for r in points] == ["oracle", "dpmpp_2m 4, noise ×1.1/1.2", "student 2"]
    assert points[0]["nfe"] is None and points[1]["spread_skill"] == [1.0, 0.95]


def test_the_plot_is_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    table = _table(tmp_path / "a.csv", [
        ("oracle", "", 0.25, [1.0, 1.0]), ("euler 4", "4", 0.31, [0.5, 0.4]),
        ("euler 12", "12", 0.29, [0.8, 0.7]), ("student 2", "2", 0.2893, [1.0, 0.9]),
    ])  # fmt: skip
    out = tmp_path / "grid.png"
    plot.draw(plot.read_rows([table]), out, "test")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
