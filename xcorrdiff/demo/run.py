"""The demo: downscale held-out known-truth data with the packaged model and score it.

``xcorrdiff demo`` (and :func:`run_demo`) runs the whole CorrDiff workflow on data whose
true conditional distribution is known (:mod:`xcorrdiff.tutorial`):

1. make held-out LR/HR pairs on the demo model's domain with a weather ``seed`` the model
   never saw in training;
2. downscale them with the model (regression mean μ plus ``n_ensemble`` diffusion members);
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
>>> result = run_demo("demo-output", n_ensemble=32, n_times=1)  # doctest: +SKIP
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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import xarray as xr

from xcorrdiff._checks import check_int, resolve_device
from xcorrdiff._files import publish_dir
from xcorrdiff.config import SAMPLERS
from xcorrdiff.data.grids import check_same_grid
from xcorrdiff.demo.figures import write_figures
from xcorrdiff.demo.scores import METRICS, Criterion, check_criteria, demo_scores, format_tables
from xcorrdiff.model import DEMO_MODEL_DIR

if TYPE_CHECKING:
    from xcorrdiff.model import CorrDiffModel

__all__ = [
    "DATA_SEED",
    "DEFAULT_MEMBERS",
    "DEFAULT_TIMES",
    "DEMO_MODEL_DIR",
    "TRAINING_SEED",
    "DemoResult",
    "run_demo",
]

#: Weather seed of the demo model's training data (``make_synthetic(seed=...)``).
TRAINING_SEED = 0
#: Weather seed of the demo's held-out data: never in the training set.
DATA_SEED = 1
#: Ensemble size of ``xcorrdiff demo``.
DEFAULT_MEMBERS = 32
#: Held-out times of ``xcorrdiff demo``: chosen so the demo runs in under three minutes on
#: a two-core CPU (see docs/demo.md for the measured run time).
DEFAULT_TIMES = 1
#: Marker file written into the output folder; ``overwrite=True`` only replaces a folder
#: that carries it (or an empty one), never an unrelated directory.
MARKER = "xcorrdiff-demo.json"


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


def _load(model: CorrDiffModel | str | os.PathLike[str], device: str | None) -> CorrDiffModel:
    """The model on its device: a given model stays where it is; a loaded one goes to
    ``device`` (default: the option ``device``, else CUDA when available, else the CPU)."""
    from xcorrdiff.model import CorrDiffModel, load_model

    if isinstance(model, CorrDiffModel):
        return model
    target = resolve_device(device)
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
    # The synthetic grid computed here may differ from the model's stored one in the last
    # bits (another CPU): the one rule of data/grids.py decides, and the model's
    # coordinates label the truth from here on.
    hint = "the demo needs a model trained on xcorrdiff.tutorial.make_synthetic data of that domain"
    if "lat" not in model.grid.coords:
        raise ValueError(
            f"the model's HR grid has no 'lat', so it is not the synthetic domain; {hint}"
        )
    hr = check_same_grid(
        hr, model.grid, model.grid_dims, hint=hint, grid_role=f"the model's HR grid {model.shape}",
        role=f"the synthetic domain of hr_shape={tuple(hr_shape)}, factor={factor}",
    )  # fmt: skip
    missing = [n for n in model.output_names if n not in hr.data_vars]
    if missing:
        raise ValueError(
            f"the model's outputs {missing} are not variables of the synthetic data "
            f"{list(hr.data_vars)}"
        )
    return lr, hr


def run_demo(
    out: str | os.PathLike[str] = "xcorrdiff-demo",
    *,
    model: CorrDiffModel | str | os.PathLike[str] = "demo",
    n_ensemble: int = DEFAULT_MEMBERS,
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
    n_ensemble : int, default 32
        Ensemble size, of CorrDiff and of the oracle (>= 2).
    n_times : int, default 1
        Held-out times (>= 1); the run time grows linearly with ``n_times * n_ensemble``.
    num_steps : int, optional
        Sampler steps; default the model's. The sampler is the model's.
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
    n_ensemble = check_int("n_ensemble", n_ensemble, minimum=2)
    n_times = check_int("n_times", n_times, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    data_seed = check_int("data_seed", data_seed, minimum=0)
    if num_steps is not None:
        num_steps = check_int("num_steps", num_steps, minimum=1)
    if figures:
        _require_matplotlib()
    out_path = Path(out).expanduser()
    _check_out(out_path, overwrite)
    report_stream = stream if stream is not None else sys.stdout
    clock = _Clock(progress, stream if stream is not None else sys.stderr)
    staging = _staging_dir(out_path)
    try:
        resolved = _load(model, device)
        if resolved.diffusion is None:
            raise ValueError("the model has no diffusion network; the demo needs both stages")
        shape = (int(hr_shape[0]), int(hr_shape[1]))
        lr, hr = _held_out_data(resolved, n_times, data_seed, shape, factor)
        clock.lap("model and held-out data")
        fields = _downscale(resolved, lr, hr, n_ensemble, seed, num_steps, clock)
        clock.lap("downscale")
        if resolved.student is not None:
            fields = _with_student(fields, resolved, lr, n_ensemble, seed)
            clock.lap("downscale (student)")
        scores, criteria, oracle, bilinear = _score(fields, lr, n_ensemble, seed, clock)
        clock.lap("oracle ensemble and scores")
        steps, sampler = fields.steps, resolved.sampler.sampler
        factors = _noise_scales(resolved)
        calibrated = " (noise calibrated)" if factors["noise_scale"] is not None else ""
        header = (
            f" — {n_times} held-out time(s) x {shape[0]}x{shape[1]} points, {n_ensemble} "
            f"members, {steps} {sampler.capitalize()} steps{calibrated}, weather seed {data_seed}"
        )
        report = format_tables(scores, criteria, header) + _speed(fields, clock.seconds)
        print(report, file=report_stream, flush=True)
        written = _figures(staging, fields, oracle, lr, dpi) if figures else []
        if figures:
            clock.lap("figures")
        _write_store(staging, fields, bilinear, scores)
        clock.lap("write")
        settings = {
            "model": os.fspath(DEMO_MODEL_DIR) if model == "demo" else str(model),
            "n_ensemble": n_ensemble,
            "n_times": n_times,
            "sampler": sampler,
            "num_steps": steps,
            "student_steps": fields.student_steps,
            **factors,
            "seed": seed,
            "data_seed": data_seed,
            "hr_shape": list(hr_shape),
            "factor": factor,
        }
        seconds = clock.finish()
        (staging / MARKER).write_text(
            json.dumps(_summary(settings, scores, criteria, seconds), indent=2)
        )
        publish_dir(staging, out_path)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    if progress:
        print(
            f"wrote {os.fspath(out_path)}/demo.zarr and {len(written)} figures in "
            f"{seconds['total']:.0f} s ({seconds['cpu']:.0f} CPU seconds)",
            file=clock.stream,
        )
    return DemoResult(
        scores=scores,
        criteria=criteria,
        out=out_path,
        figures=[out_path / p.name for p in written],
        seconds=seconds,
        report=report,
    )


class _Clock:
    """Wall-clock seconds per stage (printed when ``progress``), total and CPU time."""

    def __init__(self, progress: bool, stream: TextIO) -> None:
        self.progress, self.stream = progress, stream
        self.seconds: dict[str, float] = {}
        self.start = self.last = time.perf_counter()
        self.cpu_start = time.process_time()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage], self.last = now - self.last, now
        if self.progress:
            print(f"{stage}: {self.seconds[stage]:.1f} s", file=self.stream, flush=True)

    def finish(self) -> dict[str, float]:
        self.seconds["total"] = time.perf_counter() - self.start
        self.seconds["cpu"] = time.process_time() - self.cpu_start  # all threads, user + system
        return self.seconds


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "the demo's figures need matplotlib; install it with `pip install "
            "xcorrdiff[plot]` or pass figures=False (--no-figures)"
        ) from exc


@dataclasses.dataclass(frozen=True)
class _Fields:
    """The demo's fields on the HR grid: members, regression mean, truth; the steps run."""

    members: xr.Dataset
    mean: xr.Dataset
    truth: xr.Dataset
    attrs: dict[str, Any]
    steps: int
    student: xr.Dataset | None = None
    student_steps: int | None = None


def _with_student(
    fields: _Fields, model: CorrDiffModel, lr: xr.Dataset, n_ensemble: int, seed: int
) -> _Fields:
    """``fields`` with the members of the model's distilled student (same seed)."""
    from xcorrdiff.inference.api import downscale

    assert model.student is not None and model.student_config is not None
    device = next(model.student.parameters()).device
    ens = downscale(lr, model, n_ensemble, seed=seed, student=True, device=device)
    steps = model.student_config.sampler.num_steps
    return dataclasses.replace(fields, student=ens[list(fields.members.data_vars)],
                               student_steps=steps)  # fmt: skip


def _noise_scales(model: CorrDiffModel) -> dict[str, list[float] | None]:
    """The calibrated initial-noise factors of the model's sampler and of its student's
    (:func:`xcorrdiff.calibrate`), None where not calibrated."""
    student = model.student_config.sampler if model.student_config is not None else None
    scales = {"noise_scale": model.sampler, "student_noise_scale": student}
    return {
        key: None if own is None or own.noise_scale is None else list(own.noise_scale)
        for key, own in scales.items()
    }


def _speed(fields: _Fields, seconds: dict[str, float]) -> str:
    """The report's last line: seconds per member of the teacher and of the student."""
    if fields.student is None:
        return ""
    count = fields.members.sizes["member"] * fields.members.sizes["time"]
    teacher, student = seconds["downscale"] / count, seconds["downscale (student)"] / count
    return (
        f"\nseconds per member (downscale, regression included): {teacher:.3f} with "
        f"{fields.steps} sampler steps, {student:.3f} with the {fields.student_steps}-step "
        f"distilled student ({teacher / student:.1f}x faster)"
    )


def _downscale(
    model: CorrDiffModel,
    lr: xr.Dataset,
    hr: xr.Dataset,
    n_ensemble: int,
    seed: int,
    num_steps: int | None,
    clock: _Clock,
) -> _Fields:
    """Members and regression means of the held-out times, with the model's sampler."""
    from xcorrdiff.inference.api import downscale

    assert model.diffusion is not None
    steps = num_steps if num_steps is not None else model.sampler.num_steps
    evaluations = SAMPLERS[model.sampler.sampler].evaluations(steps)
    total = lr.sizes["time"] * n_ensemble * evaluations
    with _count_evaluations(
        model.diffusion, total, desc="downscale", disable=not clock.progress, stream=clock.stream
    ):
        ens = downscale(
            lr, model, n_ensemble, seed=seed, num_steps=num_steps,
            device=next(model.diffusion.parameters()).device, return_mean=True,
        )  # fmt: skip
    names = list(model.output_names)
    mean = ens[[f"{n}_mean" for n in names]].rename({f"{n}_mean": n for n in names})
    return _Fields(ens[names], mean, hr[names], dict(ens.attrs), steps)


def _score(
    fields: _Fields, lr: xr.Dataset, n_ensemble: int, seed: int, clock: _Clock
) -> tuple[xr.Dataset, list[Criterion], xr.Dataset, xr.Dataset | None]:
    """The scores, the criteria, the oracle ensemble and the bilinear interpolation."""
    from xcorrdiff.data.regrid import regrid
    from xcorrdiff.tutorial import oracle_ensemble, oracle_mean

    names = list(fields.members.data_vars)
    oracle = _compute_with_bar(
        oracle_ensemble(lr, n_ensemble=n_ensemble, seed=seed, chunks={"member": 4})[names],
        desc="oracle",
        disable=not clock.progress,
        stream=clock.stream,
    )
    in_input = [n for n in names if n in lr.data_vars]
    bilinear = regrid(lr[in_input], fields.truth) if in_input else None
    exact_mean = oracle_mean(lr)[names]
    scores = demo_scores(
        fields.truth, fields.members, fields.mean, oracle, bilinear, exact_mean,
        student=fields.student,
    )  # fmt: skip
    return scores, check_criteria(scores), oracle, bilinear


def _figures(
    folder: Path, fields: _Fields, oracle: xr.Dataset, lr: xr.Dataset, dpi: int
) -> list[Path]:
    from xcorrdiff.data.regrid import regrid

    in_input = [n for n in fields.members.data_vars if n in lr.data_vars]
    nearest = regrid(lr[in_input], fields.truth, method="nearest") if in_input else xr.Dataset()
    return write_figures(
        folder,
        lr_nearest=nearest,
        mean=fields.mean,
        members=fields.members,
        truth=fields.truth,
        oracle=oracle,
        dpi=dpi,
    )


def _write_store(
    folder: Path, fields: _Fields, bilinear: xr.Dataset | None, scores: xr.Dataset
) -> None:
    """``demo.zarr``: members, means, truth, the bilinear input; the scores as a group."""
    names = list(fields.members.data_vars)
    store = xr.Dataset(
        {
            **{n: fields.members[n] for n in names},
            **{f"{n}_mean": fields.mean[n] for n in names},
            **{f"{n}_truth": fields.truth[n] for n in names},
            **(
                {f"{n}_bilinear": bilinear[n] for n in bilinear.data_vars}
                if bilinear is not None
                else {}
            ),
        },
        attrs={**fields.attrs, "title": "xcorrdiff demo: held-out synthetic data"},
    )
    for var in store.variables.values():
        var.encoding = {}
    store.to_zarr(folder / "demo.zarr", mode="w-", consolidated=False)
    scores.to_zarr(folder / "demo.zarr", group="scores", mode="w-", consolidated=False)


def _summary(
    settings: dict[str, Any],
    scores: xr.Dataset,
    criteria: list[Criterion],
    seconds: dict[str, float],
) -> dict[str, Any]:
    """What ``xcorrdiff-demo.json`` records: settings, scores, criteria, timings."""
    values = {
        str(v): {m: float(scores[m].sel(variable=v)) for m in METRICS}
        for v in scores["variable"].values
    }
    return {
        "settings": settings,
        "scores": {
            v: {m: x for m, x in row.items() if not math.isnan(x)} for v, row in values.items()
        },
        "criteria": [dataclasses.asdict(c) for c in criteria],
        "seconds": seconds,
    }
