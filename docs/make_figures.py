"""Make the documentation figures (PNG) under ``docs/_static/``.

Not run by the Sphinx build; run it by hand after changing the synthetic data or the plots,
from the repository root::

    .venv/bin/python docs/make_figures.py

Needs matplotlib (``pip install -e ".[plot]"``). Takes a few seconds on a CPU. The figures
are kept small (about 100 dpi, PNG) so that the committed files stay well under 300 KB.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter
from PIL import Image

import xcorrdiff
import xcorrdiff.plot

STATIC = Path(__file__).resolve().parent / "_static"
DPI = 90
KM = FuncFormatter(lambda value, _: f"{value / 1000:g}")


def save(fig, name: str) -> Path:  # type: ignore[no-untyped-def]
    """Save as a palette PNG (128 colours): a third of the size, no visible loss."""
    path = STATIC / name
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    Image.open(path).convert("RGB").quantize(colors=128).save(path, optimize=True)
    return path


def synthetic_fields(lr, hr) -> Path:  # type: ignore[no-untyped-def]
    """LR input, HR truth (2 m temperature) and the HR orography, on longitude/latitude."""
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.3), constrained_layout=True)
    t_lr = lr.t2m.isel(time=0)
    t_hr = hr.t2m.isel(time=0)
    vmin = float(min(t_lr.min(), t_hr.min()))
    vmax = float(max(t_lr.max(), t_hr.max()))
    kw = {"cmap": "RdYlBu_r", "vmin": vmin, "vmax": vmax, "shading": "auto"}
    axes[0].pcolormesh(lr.lon, lr.lat, t_lr, **kw)
    axes[0].set_title(f"LR t2m ({lr.sizes['lat']}×{lr.sizes['lon']})")
    mesh = axes[1].pcolormesh(hr.lon, hr.lat, t_hr, **kw)
    axes[1].set_title(f"HR t2m ({hr.sizes['y']}×{hr.sizes['x']})")
    fig.colorbar(mesh, ax=axes[:2], label="K", shrink=0.9)
    oro = axes[2].pcolormesh(hr.lon, hr.lat, hr.orography, cmap="terrain", shading="auto")
    axes[2].contour(hr.lon, hr.lat, hr.land_sea_mask, levels=[0.5], colors="k", linewidths=0.8)
    axes[2].set_title("HR orography and coastline")
    fig.colorbar(oro, ax=axes[2], label="m", shrink=0.9)
    hr_box = (hr.lon.min(), hr.lon.max(), hr.lat.min(), hr.lat.max())
    for ax in axes:
        ax.set_xlim(hr_box[0], hr_box[1])
        ax.set_ylim(hr_box[2], hr_box[3])
        ax.set_xlabel("longitude [°E]")
        ax.set_aspect(1 / 0.71)  # roughly 1/cos(45°)
    axes[0].set_ylabel("latitude [°N]")
    return save(fig, "synthetic_fields.png")


def oracle_members(lr, hr) -> Path:  # type: ignore[no-untyped-def]
    """10 m wind: LR input on the HR grid, oracle mean E[hr | lr], two oracle members, truth."""
    first = lr.isel(time=[0])
    mean = xcorrdiff.tutorial.oracle_mean(first)
    oracle = xcorrdiff.tutorial.oracle_ensemble(first, n_members=2, seed=1)
    axes = xcorrdiff.plot.maps(
        inputs=first.u10m.corrdiff.regrid(hr).isel(time=0),
        mean=mean.u10m.isel(time=0),
        members=oracle.u10m.isel(time=0).compute(),
        truth=hr.u10m.isel(time=0),
        cmap="PuOr_r",
    )
    axes[0].set_title("LR input (bilinear)")
    axes[1].set_title("oracle mean E[hr | lr]")
    for ax in axes:
        ax.xaxis.set_major_formatter(KM)
        ax.yaxis.set_major_formatter(KM)
        ax.set_xlabel("x [km]")
        ax.set_ylabel("")
    axes[0].set_ylabel("y [km]")
    fig = axes[0].figure
    fig.suptitle("u10m [m s-1]: one LR state, its conditional mean, two samples of p(hr | lr)")
    return save(fig, "oracle_members.png")


def oracle_verification(lr, hr) -> Path:  # type: ignore[no-untyped-def]
    """Spread-skill, rank histogram and spectra of a 16-member oracle ensemble."""
    oracle = xcorrdiff.tutorial.oracle_ensemble(lr, n_members=16, seed=1).compute()
    mean = xcorrdiff.tutorial.oracle_mean(lr)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), constrained_layout=True)
    xcorrdiff.plot.spread_skill(oracle, hr, variable="t2m", ax=axes[0])
    xcorrdiff.plot.rank_histogram(oracle, hr, variable="t2m", ax=axes[1])
    xcorrdiff.plot.spectra(hr.u10m, members=oracle.u10m, regression=mean.u10m, ax=axes[2])
    for line in axes[2].get_lines():
        if line.get_label() == "truth":
            line.set_linestyle("--")  # the members lie on the truth; keep them visible
    axes[0].set_title("t2m spread-skill")
    axes[1].set_title("t2m rank histogram")
    axes[2].set_title("u10m spectra")
    return save(fig, "oracle_verification.png")


def main() -> None:
    STATIC.mkdir(exist_ok=True)
    lr, hr = xcorrdiff.tutorial.make_synthetic(n_times=32, hr_shape=(128, 128), factor=8, seed=0)
    for path in (synthetic_fields(lr, hr), oracle_members(lr, hr), oracle_verification(lr, hr)):
        print(f"{path.relative_to(STATIC.parent.parent)}: {path.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
