"""Benchmarks of the synthetic data set (``xcorrdiff.tutorial``).

Target: ``make_synthetic(n_times=200, hr_shape=(128, 128), factor=8)`` under 10 s on two
CPU cores.
"""

from __future__ import annotations

import xcorrdiff.tutorial as tutorial


class MakeSynthetic:
    """The paired LR/HR data set."""

    timeout = 120
    params = ((50, 200), ((64, 64), (128, 128)))
    param_names = ("n_times", "hr_shape")

    def setup(self, n_times: int, hr_shape: tuple[int, int]) -> None:
        # Build (and cache) the domain so that the timing is the weather and the HR fields.
        tutorial.make_synthetic(n_times=1, hr_shape=hr_shape, factor=8)

    def time_make_synthetic(self, n_times: int, hr_shape: tuple[int, int]) -> None:
        tutorial.make_synthetic(n_times=n_times, hr_shape=hr_shape, factor=8, seed=1)

    def peakmem_make_synthetic(self, n_times: int, hr_shape: tuple[int, int]) -> None:
        tutorial.make_synthetic(n_times=n_times, hr_shape=hr_shape, factor=8, seed=1)


class MakeSyntheticColdDomain:
    """Including the domain (terrain, grids): a new ``domain_seed`` every call."""

    timeout = 120

    def setup(self) -> None:
        self.domain_seed = 1000

    def time_make_synthetic_new_domain(self) -> None:
        self.domain_seed += 1
        tutorial.make_synthetic(
            n_times=200, hr_shape=(128, 128), factor=8, domain_seed=self.domain_seed
        )


class Oracle:
    """Samples of ``p(hr | lr)`` and the conditional mean."""

    timeout = 120

    def setup(self) -> None:
        self.lr, _ = tutorial.make_synthetic(n_times=32, hr_shape=(128, 128), factor=8)

    def time_oracle_ensemble_16_members(self) -> None:
        tutorial.oracle_ensemble(self.lr, n_members=16, seed=1).compute(scheduler="sync")

    def time_oracle_mean(self) -> None:
        tutorial.oracle_mean(self.lr)
