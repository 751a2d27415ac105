"""Calibration on known truth: spread/skill and CRPS before and after, on unseen times.

The packaged demo model (its own sampler, its shipped noise factors removed) is calibrated
by :func:`xcorrdiff.calibrate` on ``--times`` held-out synthetic times of one weather seed
(the demo's data seed), then both the model and its calibrated copy downscale ``--times``
times of *another* weather seed, which calibration never saw, with ``--members`` members;
per output variable the fair CRPS and the spread/skill ratio (Fortin-corrected; 1 is
calibrated) before and after, and the factor calibration chose. One search gives both of
calibrate's rules: the default one-standard-error rule (``factor``, ``after``) and the
least fair CRPS (``least``).
``--student``: the same for the demo model's distilled student (its own sampler
calibrated, its members scored).

Usage::

    python asv_benchmarks/calibration.py [--times 8] [--members 16] [--student]
"""

from __future__ import annotations

import argparse
import time

import xcorrdiff
import xcorrdiff.verify as xv
from xcorrdiff.inference.calibrate import choose, with_noise_scale


def main() -> None:
    from xcorrdiff.demo.run import DATA_SEED, _held_out_data, _load

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--times", type=int, default=8)
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--student", action="store_true", help="calibrate the student")
    args = parser.parse_args()
    # from the uncalibrated sampler (the packaged model ships calibrated on another seed)
    model = with_noise_scale(_load("demo", "cpu"), None, args.student)  # type: ignore[arg-type]
    names = list(model.output_names)
    seen_lr, seen_hr = _held_out_data(model, args.times, DATA_SEED, (128, 128), 8)
    new_lr, new_hr = _held_out_data(model, args.times, DATA_SEED + 1, (128, 128), 8)
    start = time.perf_counter()
    least = xcorrdiff.calibrate(
        model, seen_lr, seen_hr[names], n_ensemble=args.members, device="cpu",
        student=args.student, rule="least_crps",
    )  # fmt: skip
    seconds = time.perf_counter() - start
    search = least.provenance["student_calibration" if args.student else "calibration"]
    chosen = tuple(
        choose(search["candidates"], search["crps_fair"][n], search["standard_error"][n],
               "one_se")
        for n in names
    )  # fmt: skip
    calibrated = with_noise_scale(least, chosen, args.student)
    own = calibrated.student_config.sampler if args.student else calibrated.sampler
    print(f"xcorrdiff {xcorrdiff.__version__}; demo model{' (its student)' * args.student}, "
          f"sampler {own.sampler} {own.num_steps} steps; calibrated on {args.times} times of data seed "
          f"{DATA_SEED} in {seconds:.0f} s, scored on {args.times} times of seed "
          f"{DATA_SEED + 1}, {args.members} members")  # fmt: skip
    print(f"{'variable':<9}{'factor':>7}{'least':>6}{'fair CRPS before':>18}{'after':>8}"
          f"{'least':>8}{'spread/skill before':>21}{'after':>8}{'least':>8}")  # fmt: skip
    scores = {}
    for label, m in (("before", model), ("after", calibrated), ("least", least)):
        ens = new_lr.corrdiff.downscale(
            model=m, n_ensemble=args.members, device="cpu", student=args.student
        )
        scores[label] = (
            xv.crps(ens[names], new_hr[names], fair=True),
            xv.spread_skill(ens[names], new_hr[names]),
        )
    own_least = least.student_config.sampler if args.student else least.sampler
    for k, name in enumerate(names):
        crps = [float(scores[x][0][name]) for x in ("before", "after", "least")]
        ssr = [float(scores[x][1][name]) for x in ("before", "after", "least")]
        print(f"{name:<9}{chosen[k]:7.2f}{own_least.noise_scale[k]:6.2f}{crps[0]:18.4f}"
              f"{crps[1]:8.4f}{crps[2]:8.4f}{ssr[0]:21.3f}{ssr[1]:8.3f}{ssr[2]:8.3f}")  # fmt: skip
    print("\nthe search: fair CRPS (standard error of the difference from the least)")
    for name in names:
        cells = zip(search["candidates"], search["crps_fair"][name],
                    search["standard_error"][name], strict=True)  # fmt: skip
        print(f"{name}: " + ", ".join(f"{c:g}: {v:.4f} ({e:.4f})" for c, v, e in cells))


if __name__ == "__main__":
    main()
