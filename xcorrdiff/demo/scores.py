"""The demo's scores, its quality criteria and the printed tables.

:func:`demo_scores` pools each score over every time and grid point; :func:`check_criteria`
holds them to the targets the packaged demo model is meant to meet; :func:`format_tables`
prints one table per variable.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import xarray as xr

from xcorrdiff.verify.spectra import high_wavenumber_power

__all__ = [
    "METRICS",
    "SPREAD_SKILL_VARIABLES",
    "STUDENT_METRICS",
    "Criterion",
    "check_criteria",
    "demo_scores",
    "format_tables",
    "high_wavenumber_power",
]

#: Variables whose spread-skill ratio the demo holds to 0.8-1.25: the winds and the
#: intermittent variable (the other variables' ratios are printed without a target).
SPREAD_SKILL_VARIABLES = ("u10m", "v10m", "precip")

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
    "crps_student": "CRPS, distilled student's members",
    "spread_skill_student": "spread-skill ratio, student's members",
    "power_student": "high-k power / truth's, student's members",
}
#: The scores of the distilled student's members (NaN for a model without one).
STUDENT_METRICS = ("crps_student", "spread_skill_student", "power_student")


def demo_scores(
    truth: xr.Dataset,
    members: xr.Dataset,
    mean: xr.Dataset,
    oracle: xr.Dataset,
    bilinear: xr.Dataset | None = None,
    oracle_mean: xr.Dataset | None = None,
    *,
    student: xr.Dataset | None = None,
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
    student : xarray.Dataset, optional
        The members of the model's distilled student (:data:`STUDENT_METRICS`; NaN
        without them).
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
        for metric, value in _student_scores(student, name, t, truth_power, member_dim).items():
            rows[metric].append(value)
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


def _student_scores(
    student: xr.Dataset | None, name: str, truth: xr.DataArray, power: float, member_dim: str
) -> dict[str, float]:
    """The student's CRPS, spread-skill ratio and relative high-k power (NaN without it)."""
    from xcorrdiff import verify

    if student is None:
        return dict.fromkeys(STUDENT_METRICS, math.nan)
    f = student[name]
    return {
        "crps_student": float(verify.crps(f, truth, member_dim=member_dim)),
        "spread_skill_student": float(verify.spread_skill(f, truth, member_dim=member_dim)),
        "power_student": high_wavenumber_power(f) / power,
    }


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
        s = {m: float(scores[m].sel(variable=name)) for m in METRICS if m in scores}
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
            value = float(scores[metric].sel(variable=name)) if metric in scores else math.nan
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
