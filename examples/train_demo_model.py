"""Train the packaged demo model (``xcorrdiff.load_model("demo")``), the recipe that made it.

The recipe is exactly that of ``examples/train_tiny.py`` with its defaults: 512 times of
the known-truth synthetic data (``make_synthetic(n_times=512, hr_shape=(128, 128),
factor=8)``, weather seed 0, terrain seed 0), the ``tiny`` preset with its defaults (seed
0; its residual scaling included), the targets ``t2m``, ``u10m``, ``v10m`` and ``precip``
(normalized after ``log1p``; ``orography`` and ``land_sea_mask`` are the invariants), on
the CPU with one torch thread. The model's default sampler is set to 4 DPM-Solver++(2M)
steps from sigma_max = 80 (see docs/performance.md, "Samplers: cost and skill by network
evaluations", for the table that chose it; before issue 26 it was 24 Euler steps, see
docs/user-guide/training.md, "Residual scaling", for sigma_max). Then a 2-step student of
that sampler is distilled on the same data (``xcorrdiff.train.distill``, 1,024 samples;
``--student-of DIR`` runs this step and the next on a trained model, as was done for the
packaged one). Last, the model's sampler's initial-noise factors are calibrated
(``xcorrdiff.calibrate``, its defaults: 16 members, the one-standard-error rule) on 8 times
of weather seed 3, which neither training nor any score of the demo or the benchmarks uses
(``--calibrate-of DIR`` runs this step alone on a trained model, as was done for the
packaged one). The student stays uncalibrated: calibrated the same way, its precipitation
came out over-dispersed on the benchmark's times (docs/performance.md, "Samplers"). The
demo (``xcorrdiff demo``) scores the model and its student on weather seed 1, which is in
neither set.

Usage::

    python examples/train_demo_model.py --out xcorrdiff/models/demo [--overwrite]

The model directory (config.json, safetensors weights, grid and invariant files, about
9 MB) is written to ``--out`` when every stage is done; checkpoints and the training log
go to ``--out``'s sibling ``<out>-checkpoints`` unless ``--checkpoint-dir`` is given. On a
shared two-core CPU the two stages took 57.7 minutes and the student 25.0 (docs/demo.md
has the details).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

import xcorrdiff
from xcorrdiff.config import SamplerConfig
from xcorrdiff.train.distillation import distill
from xcorrdiff.tutorial import make_synthetic

#: The recipe (keep in step with docs/demo.md).
N_TIMES = 512
HR_SHAPE = (128, 128)
FACTOR = 8
WEATHER_SEED = 0
VARIABLES = ["t2m", "u10m", "v10m", "precip"]
OUTPUT_TRANSFORMS = {"precip": "log1p"}
PRESET = "tiny"
THREADS = 1
#: Default sampler stored with the model.
SAMPLER = SamplerConfig(sampler="dpmpp_2m", num_steps=4, sigma_max=80.0)
#: The distilled student (xcorrdiff.train.distill): its evaluations and training samples.
STUDENT_STEPS = 2
STUDENT_SAMPLES = 1024
#: Calibration of the sampler's noise factors (xcorrdiff.calibrate): weather seed and times.
CALIBRATION_SEED = 3
CALIBRATION_TIMES = 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--checkpoint-dir", type=Path, default=None)
    parser.add_argument(
        "--student-of", type=Path, default=None, metavar="MODEL_DIR",
        help="skip both stages: distil the student of this trained model, then calibrate",
    )  # fmt: skip
    parser.add_argument(
        "--calibrate-of", type=Path, default=None, metavar="MODEL_DIR",
        help="skip training and distillation: calibrate this model's sampler (the last step)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.out.exists() and not args.overwrite:
        parser.error(f"--out {args.out} already exists; pass --overwrite to replace it")
    checkpoints = args.checkpoint_dir or args.out.with_name(args.out.name + "-checkpoints")

    torch.set_num_threads(THREADS)
    start = time.perf_counter()
    if args.calibrate_of is not None:
        model = xcorrdiff.load_model(args.calibrate_of, device="cpu")
    else:
        model = trained_with_student(args.student_of, checkpoints)
    model = calibrated(model)
    minutes = (time.perf_counter() - start) / 60
    path = model.save(args.out, overwrite=args.overwrite)
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file()) / 1e6
    final = model.provenance["diffusion"]["final_validation"]
    print(
        f"done in {minutes:.1f} min on {platform.machine()} CPU ({THREADS} torch thread), "
        f"torch {torch.__version__}; {size:.1f} MB saved to {path}\n"
        f"diffusion validation loss {final['val_loss']:.4f} vs zero residual "
        f"{final['val_loss_zero_residual']:.4f}; student of {STUDENT_STEPS} steps distilled on "
        f"{model.provenance['student']['samples']} samples; noise factors "
        f"{model.provenance['calibration']['chosen']}"
    )


def trained_with_student(student_of: Path | None, checkpoints: Path) -> xcorrdiff.CorrDiffModel:
    """Both stages (or the model at ``student_of``), with :data:`SAMPLER` and the student."""
    lr, hr = make_synthetic(n_times=N_TIMES, hr_shape=HR_SHAPE, factor=FACTOR, seed=WEATHER_SEED)
    hr = hr[VARIABLES]
    config = xcorrdiff.TrainConfig(
        preset=PRESET, output_transforms=OUTPUT_TRANSFORMS, checkpoint_dir=str(checkpoints)
    )
    print(f"training {PRESET!r} on {N_TIMES} times of seed {WEATHER_SEED}; log in {checkpoints}")
    if student_of is None:
        model = lr.corrdiff.fit(hr, config=config)
        model.sampler = SAMPLER
    else:
        model = xcorrdiff.load_model(student_of, device="cpu")
    return distill(model, lr, hr, STUDENT_STEPS, config=config, duration=STUDENT_SAMPLES)


def calibrated(model: xcorrdiff.CorrDiffModel) -> xcorrdiff.CorrDiffModel:
    """``model`` with its sampler's noise factors calibrated on :data:`CALIBRATION_TIMES`
    times of weather seed :data:`CALIBRATION_SEED`."""
    lr, hr = make_synthetic(
        n_times=CALIBRATION_TIMES, hr_shape=HR_SHAPE, factor=FACTOR, seed=CALIBRATION_SEED
    )
    return xcorrdiff.calibrate(model, lr, hr[VARIABLES], device="cpu")


if __name__ == "__main__":
    main()
