"""Distil a student of the packaged demo model at a given step count and save it.

The demo model's recipe (``examples/train_demo_model.py``: 512 times of weather seed 0, the
``tiny`` preset with its defaults, one torch thread), with the teacher set to
DPM-Solver++(2M) with ``--teacher-steps`` steps from σ_max = 80 and a student of
``--steps`` evaluations distilled on ``--samples`` samples. Score the saved model with
``sampler_steps.py --model OUT --runs euler:12 dpmpp_2m:4 student``.

Usage::

    python asv_benchmarks/student_steps.py --steps 1 --teacher-steps 4 --out /tmp/student1
    python asv_benchmarks/student_steps.py --steps 4 --teacher-steps 8 --out /tmp/student4
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--teacher-steps", type=int, default=4)
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import dataclasses

    import torch
    import train_demo_model as recipe

    import xcorrdiff
    from xcorrdiff.train.distillation import distill
    from xcorrdiff.tutorial import make_synthetic

    torch.set_num_threads(recipe.THREADS)
    started = time.perf_counter()
    model = xcorrdiff.load_model("demo", device="cpu")
    model.sampler = dataclasses.replace(recipe.SAMPLER, num_steps=args.teacher_steps)
    lr, hr = make_synthetic(
        n_times=recipe.N_TIMES, hr_shape=recipe.HR_SHAPE, factor=recipe.FACTOR,
        seed=recipe.WEATHER_SEED,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        config = xcorrdiff.TrainConfig(
            preset=recipe.PRESET, output_transforms=recipe.OUTPUT_TRANSFORMS, checkpoint_dir=folder
        )
        model = distill(
            model, lr, hr[recipe.VARIABLES], args.steps, config=config, duration=args.samples,
            progress=False,
        )  # fmt: skip
    model.save(args.out, overwrite=True)
    minutes = (time.perf_counter() - started) / 60
    print(
        f"xcorrdiff {xcorrdiff.__version__}: {args.steps}-step student of dpmpp_2m "
        f"{args.teacher_steps} distilled on {args.samples} samples in {minutes:.1f} min; "
        f"levels {model.provenance['student']['levels']}; saved to {args.out}"
    )


if __name__ == "__main__":
    main()
