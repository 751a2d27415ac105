"""The demo: downscale held-out known-truth data with the packaged model and score it.

``xcorrdiff demo`` (and :func:`run_demo`) runs the whole CorrDiff workflow on data whose
true conditional distribution is known (:mod:`xcorrdiff.tutorial`):

1. make held-out LR/HR pairs on the demo model's domain with a weather ``seed`` the model
   never saw in training;
2. downscale them with the model (regression mean μ plus ``n_members`` diffusion members);
3. score against the truth, per variable: MAE of bilinear interpolation of the input and
   of the regression mean, CRPS of the CorrDiff members and of the *oracle* ensemble (the
   same number of samples of the true ``p(hr | lr)``, the floor any model can reach),
   spread-skill ratio, and the power in the highest third of wavenumbers relative to the
   truth's, for the regression mean and for the members;
4. print one table per variable with the quality criteria the demo model is meant to
   meet (each marked ``pass`` or ``MISS``), and write ``DIR/demo.zarr`` and PNG figures.

The packaged model (``xcorrdiff/models/demo``, :data:`DEMO_MODEL_DIR`) was trained by
``examples/train_demo_model.py`` on weather seed :data:`TRAINING_SEED`; the demo's data
use :data:`DATA_SEED`.

Examples
--------
>>> from xcorrdiff.demo import run_demo
>>> result = run_demo("demo-output", n_members=32, n_times=1)  # doctest: +SKIP
>>> result.scores.to_dataframe()  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
import xarray as xr

from xcorrdiff._files import publish_dir

if TYPE_CHECKING:
    from xcorrdiff.model import CorrDiffModel

__all__ = [
    "DATA_SEED",
    "DEFAULT_MEMBERS",
    "DEFAULT_TIMES",
    "DEMO_MODEL_DIR",
    "TRAINING_SEED",
    "Criterion",
    "DemoResult",
    "check_criteria",
    "demo_scores",
    "format_tables",
    "high_wavenumber_power",
    "run_demo",
]

#: The packaged demo model (``load_model("demo")``).
DEMO_MODEL_DIR = Path(__file__).resolve().parent / "models" / "demo"
#: Weather seed of the demo model's training data (``make_synthetic(seed=...)``).
TRAINING_SEED = 0
#: Weather seed of the demo's held-out data: never in the training set.
DATA_SEED = 1
#: Ensemble size of ``xcorrdiff demo``.
DEFAULT_MEMBERS = 32
#: Held-out times of ``xcorrdiff demo``: chosen so the demo runs in under three minutes on
#: a two-core CPU (see docs/demo.md for the measured run time).
DEFAULT_TIMES = 1
#: Variables whose spread-skill ratio the demo holds to 0.8-1.25: the winds and the
#: intermittent variable (the other variables' ratios are printed without a target).
SPREAD_SKILL_VARIABLES = ("u10m", "v10m", "precip")
#: Marker file written into the output folder; ``overwrite=True`` only replaces a folder
#: that carries it (or an empty one), never an unrelated directory.
MARKER = "xcorrdiff-demo.json"

#: Scores of :func:`demo_scores`, in table order, with their row labels.
METRICS: dict[str, str] = {
    "mae_bilinear": "MAE, bilinear interpolation of the input",
    "mae_mean": "MAE, regression mean",
    "mae_oracle_mean": "MAE, exact conditional mean E[hr|lr]",
    "crps": "CRPS, CorrDiff members",
    "crps_oracle": "CRPS, oracle ensemble (the floor)",
    "spread_skill": "spread-skill ratio, CorrDiff members",
    "spread_skill_oracle": "spread-skill ratio, oracle ensemble",
    "power_mean": "high-k power / truth's, regression mean",
    "power_oracle_mean": "high-k power / truth's, E[hr|lr]",
    "power_members": "high-k power / truth's, CorrDiff members",
    "power_oracle": "high-k power / truth's, oracle ensemble",
}


# --- scores -------------------------------------------------------------------------------


def high_wavenumber_power(
    field: xr.DataArray,
    *,
    dims: tuple[Hashable, Hashable] = ("y", "x"),
    fraction: float = 1.0 / 3.0,
) -> float:
    r"""Mean power in the highest ``fraction`` of resolved wavenumbers.

    The radial spectrum :math:`E(k)` of :func:`xcorrdiff.verify.power_spectrum` (Hann
    window, linear detrend, so the fields' edges do not leak power to high wavenumbers) is
    summed over the annuli with :math:`(1 - f)\,k_N < k \le k_N`, where
    :math:`k_N = 1 / (2 \max(\Delta y, \Delta x))` is the Nyquist wavenumber of the coarser
    axis (the largest radius every direction resolves), and averaged over every other
    dimension (time, member).

    Parameters
    ----------
    field : xarray.DataArray
        Fields with both ``dims`` (plus any of ``time``, ``member``...).
    dims : (y_dim, x_dim), default ("y", "x")
        The spatial dimensions.
    fraction : float, default 1/3
        Width of the band below the Nyquist wavenumber, as a fraction of it (0 to 1).

    Returns
    -------
    float
        :math:`\sum_{k \in \text{band}} E(k)\,\Delta k`, in the field's units squared.

    Raises
    ------
    ValueError
        If ``fraction`` is not in (0, 1] or the band holds no wavenumber.
    """
    from xcorrdiff import verify

    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction!r} is invalid; expected a number in (0, 1]")
    spacing = verify.grid_spacing(field, dims)
    spec = verify.power_spectrum(field, dims=dims, window="hann", detrend="linear")
    k = spec["wavenumber"].values
    k_nyquist = 1.0 / (2.0 * max(spacing))
    band = (k > (1.0 - fraction) * k_nyquist) & (k <= k_nyquist * (1 + 1e-9))
    if not band.any():
        raise ValueError(
            f"the highest {fraction:.2f} of wavenumbers of a {field.sizes[dims[0]]}x"
            f"{field.sizes[dims[1]]} field holds no spectral bin; use a larger field"
        )
    dk = float(k[1] - k[0])
    total = spec.isel(wavenumber=np.flatnonzero(band)).sum("wavenumber") * dk
    return float(total.mean())


def demo_scores(
    truth: xr.Dataset,
    members: xr.Dataset,
    mean: xr.Dataset,
    oracle: xr.Dataset,
    bilinear: xr.Dataset | None = None,
    oracle_mean: xr.Dataset | None = None,
    *,
    member_dim: str = "member",
) -> xr.Dataset:
    """The demo's scores per variable, pooled over every time and grid point.

    Parameters
    ----------
    truth : xarray.Dataset
        HR truth ``(time, y, x)``.
    members : xarray.Dataset
        CorrDiff members ``(member, time, y, x)``, the variables of ``truth`` to score.
    mean : xarray.Dataset
        Regression mean ``(time, y, x)``.
    oracle : xarray.Dataset
        Samples of the true ``p(hr | lr)`` ``(member, time, y, x)``.
    bilinear : xarray.Dataset, optional
        The LR input interpolated onto the HR grid; variables it lacks score NaN.
    oracle_mean : xarray.Dataset, optional
        The exact conditional mean ``E[hr | lr]`` (:func:`xcorrdiff.tutorial.oracle_mean`),
        the best any regression can do; its scores are NaN without it.
    member_dim : str, default "member"
        The ensemble dimension.

    Returns
    -------
    xarray.Dataset
        One data variable per entry of :data:`METRICS` on the dimension ``variable``
        (the variables of ``members``); MAE and CRPS in the variables' units, ratios
        dimensionless.
    """
    from xcorrdiff import verify

    rows: dict[str, list[float]] = {metric: [] for metric in METRICS}
    names = [str(name) for name in members.data_vars]
    for name in names:
        t, f, o, m = truth[name], members[name], oracle[name], mean[name]
        rows["mae_bilinear"].append(
            float(np.abs(bilinear[name] - t).mean())
            if bilinear is not None and name in bilinear
            else math.nan
        )
        rows["mae_mean"].append(float(np.abs(m - t).mean()))
        rows["mae_oracle_mean"].append(
            float(np.abs(oracle_mean[name] - t).mean()) if oracle_mean is not None else math.nan
        )
        rows["crps"].append(float(verify.crps(f, t, member_dim=member_dim)))
        rows["crps_oracle"].append(float(verify.crps(o, t, member_dim=member_dim)))
        rows["spread_skill"].append(float(verify.spread_skill(f, t, member_dim=member_dim)))
        rows["spread_skill_oracle"].append(float(verify.spread_skill(o, t, member_dim=member_dim)))
        truth_power = high_wavenumber_power(t)
        rows["power_mean"].append(high_wavenumber_power(m) / truth_power)
        rows["power_oracle_mean"].append(
            high_wavenumber_power(oracle_mean[name]) / truth_power
            if oracle_mean is not None
            else math.nan
        )
        rows["power_members"].append(high_wavenumber_power(f) / truth_power)
        rows["power_oracle"].append(high_wavenumber_power(o) / truth_power)
    # Object dtype: zarr stores it as variable-length UTF-8, a specified zarr v3 type.
    variable = np.array(names, dtype=object)
    scores = xr.Dataset(
        {metric: ("variable", np.asarray(values)) for metric, values in rows.items()},
        coords={"variable": ("variable", variable)},
    )
    for metric, label in METRICS.items():
        scores[metric].attrs["long_name"] = label
    units = [str(members[n].attrs.get("units", "")) for n in names]
    scores["units"] = ("variable", np.array(units, dtype=object))
    return scores


@dataclasses.dataclass(frozen=True)
class Criterion:
    """One quality criterion of the demo, evaluated on its scores.

    Attributes
    ----------
    variable : str
        The variable it applies to.
    metric : str
        The score it bounds (a key of :data:`METRICS`).
    target : str
        The requirement, in words (e.g. ``"< 0.905 (bilinear)"``).
    passed : bool
    """

    variable: str
    metric: str
    target: str
    passed: bool


def check_criteria(scores: xr.Dataset) -> list[Criterion]:
    """Evaluate the demo's quality criteria on :func:`demo_scores` output.

    - every variable: CRPS of the members < MAE of the regression mean;
    - variables the input also carries: MAE of the regression mean < MAE of bilinear
      interpolation;
    - the winds and the intermittent variable (:data:`SPREAD_SKILL_VARIABLES`):
      spread-skill ratio between 0.8 and 1.25;
    - every variable: the members' high-wavenumber power within a factor 1.5 of the
      truth's, the regression mean's below half of it.
    """
    out: list[Criterion] = []
    for name in map(str, scores["variable"].values):
        s = {metric: float(scores[metric].sel(variable=name)) for metric in METRICS}
        if not math.isnan(s["mae_bilinear"]):
            out.append(
                Criterion(
                    name,
                    "mae_mean",
                    f"< {s['mae_bilinear']:.4g} (bilinear)",
                    s["mae_mean"] < s["mae_bilinear"],
                )
            )
        out.append(
            Criterion(name, "crps", f"< {s['mae_mean']:.4g} (MAE of μ)", s["crps"] < s["mae_mean"])
        )
        if name in SPREAD_SKILL_VARIABLES:
            out.append(
                Criterion(name, "spread_skill", "0.8 to 1.25", 0.8 <= s["spread_skill"] <= 1.25)
            )
        out.append(Criterion(name, "power_mean", "< 0.5", s["power_mean"] < 0.5))
        out.append(
            Criterion(name, "power_members", "1/1.5 to 1.5", 1 / 1.5 <= s["power_members"] <= 1.5)
        )
    return out


def format_tables(scores: xr.Dataset, criteria: Sequence[Criterion], header: str = "") -> str:
    """The demo's printed report: one table per variable, then a summary of the criteria."""
    by_key = {(c.variable, c.metric): c for c in criteria}
    lines: list[str] = []
    for name in map(str, scores["variable"].values):
        units = str(scores["units"].sel(variable=name).values)
        lines.append(f"\n{name} [{units}]{header}")
        lines.append(f"  {'score':<42} {'value':>8}   {'criterion':<22} result")
        for metric, label in METRICS.items():
            value = float(scores[metric].sel(variable=name))
            if math.isnan(value):
                continue
            c = by_key.get((name, metric))
            target, result = (c.target, "pass" if c.passed else "MISS") if c else ("", "")
            lines.append(f"  {label:<42} {value:8.4f}   {target:<22} {result}".rstrip())
    misses = [c for c in criteria if not c.passed]
    lines.append(
        f"\n{len(criteria) - len(misses)} of {len(criteria)} quality criteria pass"
        + (
            "; missed: " + ", ".join(f"{c.variable} {c.metric} ({c.target})" for c in misses)
            if misses
            else ""
        )
    )
    return "\n".join(lines)


# --- output folder --------------------------------------------------------------------------


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise FileExistsError(
                f"out={os.fspath(out)!r} already exists; choose another folder or pass "
                "overwrite=True (--overwrite) to replace it"
            )
        if not out.is_dir() or out.is_symlink():
            raise FileExistsError(
                f"out={os.fspath(out)!r} exists and is not a folder; the demo only replaces "
                "a folder it wrote before"
            )
        if any(out.iterdir()) and not (out / MARKER).is_file():
            raise FileExistsError(
                f"out={os.fspath(out)!r} is a non-empty folder the demo did not write (no "
                f"{MARKER}); refusing to replace it, choose another folder"
            )


def _staging_dir(out: Path) -> Path:
    """A fresh folder beside ``out`` (same file system), created now to prove it is writable."""
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=parent))
    except OSError as exc:
        raise OSError(
            f"out={os.fspath(out)!r} is not writable ({exc.strerror or exc}); choose a folder "
            "you can write to"
        ) from exc


# --- progress ---------------------------------------------------------------------------------


@contextmanager
def _count_evaluations(
    net: Any, total: int, *, desc: str, disable: bool, stream: TextIO
) -> Iterator[None]:
    """A tqdm bar advanced by the batch size of every forward pass of ``net``."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="member-step", disable=disable, file=stream)

    def hook(module: Any, args: tuple[Any, ...], output: Any) -> None:
        bar.update(int(args[0].shape[0]))

    handle = net.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
        bar.close()


def _compute_with_bar(obj: xr.Dataset, *, desc: str, disable: bool, stream: TextIO) -> xr.Dataset:
    """``obj.compute()`` (threaded scheduler) with a tqdm bar of finished dask tasks."""
    from dask.callbacks import Callback
    from tqdm.auto import tqdm

    bars: list[Any] = []

    def start_state(dsk: Any, state: Any) -> None:
        total = sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))
        bars.append(tqdm(total=total, desc=desc, unit="task", disable=disable, file=stream))

    def posttask(key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        bars[-1].update(1)

    with Callback(start_state=start_state, posttask=posttask):
        try:
            return obj.compute(scheduler="threads")
        finally:
            for bar in bars:
                bar.close()


# --- the demo ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DemoResult:
    """What :func:`run_demo` computed and wrote.

    Attributes
    ----------
    scores : xarray.Dataset
        :func:`demo_scores` of the held-out data.
    criteria : list of Criterion
        The quality criteria, each passed or missed.
    out : pathlib.Path
        The output folder (``demo.zarr``, figures, ``xcorrdiff-demo.json``).
    figures : list of pathlib.Path
        The PNG files written.
    seconds : dict
        Wall-clock seconds per stage and ``"total"``; ``"cpu"``: CPU seconds of the
        process (all threads, user and system).
    report : str
        The printed tables.
    """

    scores: xr.Dataset
    criteria: list[Criterion]
    out: Path
    figures: list[Path]
    seconds: dict[str, float]
    report: str

    @property
    def passed(self) -> bool:
        """Whether every quality criterion passes."""
        return all(c.passed for c in self.criteria)


def _check_count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}={value!r} is invalid; expected an integer >= {minimum}")
    return int(value)


def _load(model: CorrDiffModel | str | os.PathLike[str], device: str | None) -> CorrDiffModel:
    """The model on its device: a given model stays where it is; a loaded one goes to
    ``device`` (default CUDA when available, else the CPU)."""
    import torch

    from xcorrdiff.model import CorrDiffModel, load_model

    if isinstance(model, CorrDiffModel):
        return model
    target = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        kind = torch.device(target).type
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is invalid; expected 'cpu', 'cuda' or 'cuda:N'"
        ) from exc
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available; use 'cpu'")
    if model == "demo":
        if not (DEMO_MODEL_DIR / "config.json").is_file():
            raise FileNotFoundError(
                f"the packaged demo model is missing from {DEMO_MODEL_DIR}; reinstall "
                "xcorrdiff or make it with examples/train_demo_model.py"
            )
        return load_model(DEMO_MODEL_DIR, device=target)
    return load_model(model, device=target)


def _held_out_data(
    model: CorrDiffModel, n_times: int, data_seed: int, hr_shape: tuple[int, int], factor: float
) -> tuple[xr.Dataset, xr.Dataset]:
    from xcorrdiff.tutorial import make_synthetic

    lr, hr = make_synthetic(n_times=n_times, hr_shape=hr_shape, factor=factor, seed=data_seed)
    lat = model.grid["lat"].values if "lat" in model.grid.coords else None
    if model.shape != tuple(hr_shape) or lat is None or not np.allclose(lat, hr["lat"].values):
        raise ValueError(
            f"the model's HR grid {model.shape} is not the synthetic domain of hr_shape="
            f"{tuple(hr_shape)}, factor={factor}; the demo needs a model trained on "
            "xcorrdiff.tutorial.make_synthetic data of that domain"
        )
    missing = [n for n in model.output_names if n not in hr.data_vars]
    if missing:
        raise ValueError(
            f"the model's outputs {missing} are not variables of the synthetic data "
            f"{list(hr.data_vars)}"
        )
    return lr, hr


def _spread_skill_panel(
    ax: Any, members: xr.DataArray, oracle: xr.DataArray, truth: xr.DataArray
) -> None:
    from xcorrdiff import plot

    plot.spread_skill(oracle, truth, ax=ax, label="oracle")
    plot.spread_skill(members, truth, ax=ax, label="CorrDiff")
    top = max(max(np.nanmax(line.get_xdata()), np.nanmax(line.get_ydata())) for line in ax.lines)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)


def _write_figures(
    folder: Path,
    *,
    lr_nearest: xr.Dataset,
    mean: xr.Dataset,
    members: xr.Dataset,
    truth: xr.Dataset,
    oracle: xr.Dataset,
    dpi: int,
) -> list[Path]:
    from matplotlib.figure import Figure

    from xcorrdiff import plot

    names = [str(n) for n in members.data_vars]
    cmaps = {"t2m": "inferno", "precip": "Blues"}
    paths: list[Path] = []

    fig = Figure(figsize=(11.0, 2.2 * len(names)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(names), 5, squeeze=False))
    for row, name in zip(axes, names, strict=True):
        plot.maps(
            inputs=lr_nearest[name].isel(time=0) if name in lr_nearest else None,
            mean=mean[name].isel(time=0),
            members=members[name].isel(time=0),
            truth=truth[name].isel(time=0),
            cmap=cmaps.get(name, "viridis"),
            axes=row if name in lr_nearest else row[1:],
        )
        if name not in lr_nearest:
            row[0].set_visible(False)
        titles = ["input (LR)", "regression mean", "member 0", "member 1", "truth"]
        for ax, title in zip(row, titles, strict=True):
            ax.set_title(f"{name}: {title}", fontsize=8)
            ax.set_xlabel("")
            ax.set_ylabel("")
            ax.set_xticks([])
            ax.set_yticks([])
    paths.append(folder / "maps.png")
    fig.savefig(paths[-1], dpi=dpi)

    panels: list[tuple[str, Callable[[Any, str], Any]]] = [
        (
            "spectra",
            lambda ax, n: plot.spectra(truth[n], members=members[n], regression=mean[n], ax=ax),
        ),
        ("rank_histograms", lambda ax, n: plot.rank_histogram(members[n], truth[n], ax=ax)),
        (
            "spread_skill",
            lambda ax, n: _spread_skill_panel(ax, members[n], oracle[n], truth[n]),
        ),
    ]
    for stem, draw in panels:
        fig = Figure(figsize=(4.2 * len(names), 3.6), layout="constrained")
        row = np.atleast_1d(fig.subplots(1, len(names), squeeze=False)[0])
        for ax, name in zip(row, names, strict=True):
            draw(ax, name)
            ax.set_title(name)
            handles, labels = ax.get_legend_handles_labels()
            unique = dict(zip(labels, handles, strict=True))  # one 1:1 line, one entry
            ax.legend(unique.values(), unique.keys(), fontsize=7)
        paths.append(folder / f"{stem}.png")
        fig.savefig(paths[-1], dpi=dpi)
    return paths


def run_demo(
    out: str | os.PathLike[str] = "xcorrdiff-demo",
    *,
    model: CorrDiffModel | str | os.PathLike[str] = "demo",
    n_members: int = DEFAULT_MEMBERS,
    n_times: int = DEFAULT_TIMES,
    num_steps: int | None = None,
    seed: int = 0,
    data_seed: int = DATA_SEED,
    hr_shape: tuple[int, int] = (128, 128),
    factor: float = 8,
    overwrite: bool = False,
    figures: bool = True,
    dpi: int = 72,
    device: str | None = None,
    progress: bool = True,
    stream: TextIO | None = None,
) -> DemoResult:
    """Downscale held-out synthetic data, score it against the truth, write the results.

    Parameters
    ----------
    out : path-like, default "xcorrdiff-demo"
        Output folder, created; receives ``demo.zarr`` (members, regression means,
        truth, bilinear input; the scores in the group ``scores``), the PNG figures
        ``maps.png``, ``spectra.png``, ``rank_histograms.png``, ``spread_skill.png``, and
        ``xcorrdiff-demo.json`` (settings, scores, timings). Nothing is written there
        unless the whole demo succeeds.
    model : CorrDiffModel or path-like, default "demo"
        ``"demo"``: the packaged demo model; else a model or a saved model's directory,
        trained on :func:`xcorrdiff.tutorial.make_synthetic` data of the domain
        ``hr_shape``/``factor``.
    n_members : int, default 32
        Ensemble size, of CorrDiff and of the oracle (>= 2).
    n_times : int, default 1
        Held-out times (>= 1); the run time grows linearly with ``n_times * n_members``.
    num_steps : int, optional
        Sampler steps; default the model's. The sampler (Euler or Heun) is the model's.
    seed : int, default 0
        Seed of the members' random streams, and of the oracle ensemble.
    data_seed : int, default 1
        Weather seed of the held-out data (the demo model was trained on seed 0).
    hr_shape : (int, int), default (128, 128)
        HR grid of the synthetic domain.
    factor : float, default 8
        LR/HR resolution factor of the synthetic domain.
    overwrite : bool, default False
        Replace ``out`` if it is a folder an earlier demo wrote (or an empty one).
    figures : bool, default True
        Write the PNG figures (needs matplotlib).
    dpi : int, default 72
        Resolution of the figures.
    device : str, optional
        Where a model loaded by the demo runs: ``"cpu"``, ``"cuda"``...; default CUDA when
        available, else the CPU. A ``CorrDiffModel`` passed as ``model`` runs where it is.
    progress : bool, default True
        Show progress bars (on ``stream``).
    stream : file-like, optional
        Where the tables, progress and stage messages go; default ``sys.stdout`` for the
        tables and ``sys.stderr`` for progress.

    Returns
    -------
    DemoResult

    Raises
    ------
    ValueError
        For an invalid count or seed; a model not trained on the synthetic domain.
    FileExistsError
        If ``out`` exists and ``overwrite`` is False, or is not a demo's folder.
    OSError
        If ``out`` cannot be written.
    FileNotFoundError
        If the model cannot be found.
    ImportError
        If ``figures`` is True and matplotlib is not installed.
    """
    n_members = _check_count("n_members", n_members, 2)
    n_times = _check_count("n_times", n_times, 1)
    seed = _check_count("seed", seed, 0)
    data_seed = _check_count("data_seed", data_seed, 0)
    if num_steps is not None:
        num_steps = _check_count("num_steps", num_steps, 1)
    if figures:
        try:
            import matplotlib  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                "the demo's figures need matplotlib; install it with `pip install "
                "xcorrdiff[plot]` or pass figures=False (--no-figures)"
            ) from exc
    shape = (int(hr_shape[0]), int(hr_shape[1]))
    out_path = Path(out).expanduser()
    _check_out(out_path, overwrite)
    report_stream = stream if stream is not None else sys.stdout
    progress_stream = stream if stream is not None else sys.stderr
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage] = now - clock
        clock = now
        if progress:
            print(f"{stage}: {seconds[stage]:.1f} s", file=progress_stream, flush=True)

    start, cpu_start = clock, time.process_time()
    staging = _staging_dir(out_path)
    try:
        from xcorrdiff.data.regrid import regrid
        from xcorrdiff.downscale import downscale
        from xcorrdiff.tutorial import oracle_ensemble, oracle_mean

        resolved = _load(model, device)
        if resolved.diffusion is None:
            raise ValueError("the model has no diffusion network; the demo needs both stages")
        lr, hr = _held_out_data(resolved, n_times, data_seed, shape, factor)
        lap("model and held-out data")

        steps = num_steps if num_steps is not None else resolved.sampler.num_steps
        sampler = resolved.sampler.sampler
        # Heun evaluates the network twice per step but once on the last (to sigma = 0).
        evaluations = 2 * steps - 1 if sampler == "heun" else steps
        with _count_evaluations(
            resolved.diffusion,
            n_times * n_members * evaluations,
            desc="downscale",
            disable=not progress,
            stream=progress_stream,
        ):
            ens = downscale(
                lr,
                resolved,
                n_members,
                seed=seed,
                sampler=sampler,
                num_steps=steps,
                device=next(resolved.diffusion.parameters()).device,
                return_mean=True,
            )
        names = list(resolved.output_names)
        members = ens[names]
        mean = ens[[f"{n}_mean" for n in names]].rename({f"{n}_mean": n for n in names})
        truth = hr[names]
        lap("downscale")

        oracle = _compute_with_bar(
            oracle_ensemble(lr, n_members=n_members, seed=seed, chunks={"member": 4})[names],
            desc="oracle",
            disable=not progress,
            stream=progress_stream,
        )
        in_input = [n for n in names if n in lr.data_vars]
        bilinear = regrid(lr[in_input], truth) if in_input else None
        exact_mean = oracle_mean(lr)[names]
        scores = demo_scores(truth, members, mean, oracle, bilinear, exact_mean)
        criteria = check_criteria(scores)
        lap("oracle ensemble and scores")

        header = (
            f" — {n_times} held-out time(s) x {hr_shape[0]}x{hr_shape[1]} points, "
            f"{n_members} members, {steps} {sampler.capitalize()} steps, weather seed {data_seed}"
        )
        report = format_tables(scores, criteria, header)
        print(report, file=report_stream, flush=True)

        written: list[Path] = []
        if figures:
            nearest = regrid(lr[in_input], truth, method="nearest") if in_input else xr.Dataset()
            written = _write_figures(
                staging,
                lr_nearest=nearest,
                mean=mean,
                members=members,
                truth=truth,
                oracle=oracle,
                dpi=dpi,
            )
            lap("figures")

        store = xr.Dataset(
            {
                **{n: members[n] for n in names},
                **{f"{n}_mean": mean[n] for n in names},
                **{f"{n}_truth": truth[n] for n in names},
                **(
                    {f"{n}_bilinear": bilinear[n] for n in in_input} if bilinear is not None else {}
                ),
            },
            attrs={**ens.attrs, "title": "xcorrdiff demo: held-out synthetic data"},
        )
        for var in store.variables.values():
            var.encoding = {}
        store.to_zarr(staging / "demo.zarr", mode="w-", consolidated=False)
        scores.to_zarr(staging / "demo.zarr", group="scores", mode="w-", consolidated=False)
        lap("write")
        seconds["total"] = time.perf_counter() - start
        seconds["cpu"] = time.process_time() - cpu_start  # all threads, user + system
        summary = {
            "settings": {
                "model": os.fspath(DEMO_MODEL_DIR) if model == "demo" else str(model),
                "n_members": n_members,
                "n_times": n_times,
                "sampler": sampler,
                "num_steps": steps,
                "seed": seed,
                "data_seed": data_seed,
                "hr_shape": list(hr_shape),
                "factor": factor,
            },
            "scores": {
                str(v): {
                    m: float(scores[m].sel(variable=v))
                    for m in METRICS
                    if not math.isnan(float(scores[m].sel(variable=v)))
                }
                for v in scores["variable"].values
            },
            "criteria": [dataclasses.asdict(c) for c in criteria],
            "seconds": seconds,
        }
        (staging / MARKER).write_text(json.dumps(summary, indent=2))
        publish_dir(staging, out_path)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    if progress:
        print(
            f"wrote {os.fspath(out_path)}/demo.zarr and {len(written)} figures in "
            f"{seconds['total']:.0f} s ({seconds['cpu']:.0f} CPU seconds)",
            file=progress_stream,
        )
    return DemoResult(
        scores=scores,
        criteria=criteria,
        out=out_path,
        figures=[out_path / p.name for p in written],
        seconds=seconds,
        report=report,
    )
