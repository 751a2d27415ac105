"""Per-variable normalization: an optional transform, then center and scale.

For each variable ``v`` with statistics ``(mean, std)`` and a transform ``g``
(:mod:`xcorrdiff.data.transforms`: ``"none"``, ``"log1p"``, ``"asinh"``, ``"fourth_root"``,
``"logit"``)::

    normalize(x)   = (g(x) - mean) / std
    denormalize(z) = g⁻¹(z * std + mean)

``mean`` and ``std`` are those of ``g(x)``. :meth:`Normalizer.fit` computes them on dask
data in one pass (a single :func:`dask.compute` for all variables, float64 accumulation,
NaN ignored). :meth:`Normalizer.normalize` and :meth:`Normalizer.denormalize` are lazy and
keep float32 as float32; :meth:`Normalizer.normalize_array` does the same for stacked
``(..., channel, y, x)`` arrays at the tensor seam.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_args

import dask
import dask.array
import numpy as np
import xarray as xr

from xcorrdiff.data.transforms import TRANSFORMS, Transform

__all__ = ["Normalizer", "Transform", "VariableStats"]

_TRANSFORMS: tuple[str, ...] = get_args(Transform)
_FORMAT = "xcorrdiff.normalizer"
_VERSION = 1

T = TypeVar("T", xr.Dataset, xr.DataArray)
ArrayT = TypeVar("ArrayT")


@dataclass(frozen=True, kw_only=True)
class VariableStats:
    """Center, scale and transform of one variable.

    Parameters
    ----------
    mean
        Mean of the transformed variable, in the variable's units (or transformed units).
    std
        Standard deviation of the transformed variable; finite and positive.
    transform
        One of :data:`~xcorrdiff.data.transforms.TRANSFORMS` (applied before centering;
        inverted after scaling back).
    """

    mean: float
    std: float
    transform: Transform = "none"

    def __post_init__(self) -> None:
        if not isinstance(self.mean, int | float) or not math.isfinite(self.mean):
            raise ValueError(f"mean must be a finite number, got {self.mean!r}")
        if not isinstance(self.std, int | float) or not math.isfinite(self.std):
            raise ValueError(f"std must be a finite number, got {self.std!r}")
        if self.std <= 0:
            raise ValueError(
                f"std must be positive, got {self.std!r}; a variable with zero variance "
                "cannot be scaled, so drop it or give a positive std"
            )
        if self.transform not in _TRANSFORMS:
            raise ValueError(
                f"transform must be one of {list(_TRANSFORMS)}, got {self.transform!r}"
            )


def _float_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """Keep floating dtypes; integers and booleans become float32 or float64."""
    if np.issubdtype(dtype, np.floating):
        return dtype
    if np.issubdtype(dtype, np.complexfloating) or not (
        np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.bool_)
    ):
        raise TypeError(f"expected real numeric data, got dtype {dtype}")
    return np.result_type(dtype, np.float32)


def _names(names: Iterable[Hashable]) -> list[str]:
    return sorted(map(str, names))


@dataclass(frozen=True)
class Normalizer:
    """Per-variable center/scale normalization with optional transforms.

    Build one with :meth:`fit` (from data), :meth:`from_stats` (from known statistics,
    e.g. Earth2Studio's ``stats.json``) or :meth:`from_dict` (from :meth:`to_dict`).

    Parameters
    ----------
    stats
        ``{variable: VariableStats}``, in channel order.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"t2m": ("x", np.array([270.0, 280.0, 290.0], dtype="float32"))})
    >>> norm = Normalizer.fit(ds)
    >>> norm.normalize(ds)["t2m"].values
    array([-1.2247449,  0.       ,  1.2247449], dtype=float32)
    >>> norm.denormalize(norm.normalize(ds))["t2m"].values
    array([270., 280., 290.], dtype=float32)
    """

    stats: Mapping[str, VariableStats] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, value in self.stats.items():
            if not isinstance(value, VariableStats):
                raise TypeError(
                    f"stats[{name!r}] must be a VariableStats, got {type(value).__name__}; "
                    "build from plain numbers with Normalizer.from_stats"
                )
        object.__setattr__(self, "stats", dict(self.stats))

    # --- construction -------------------------------------------------------------------

    @classmethod
    def from_stats(
        cls,
        stats: Mapping[Hashable, Mapping[str, Any]] | None = None,
        *,
        mean: Mapping[Hashable, float] | None = None,
        std: Mapping[Hashable, float] | None = None,
        transforms: Mapping[Hashable, Transform] | None = None,
    ) -> Normalizer:
        """Build from known statistics.

        Parameters
        ----------
        stats
            ``{variable: {"mean": m, "std": s}}``, the form of Earth2Studio's CorrDiff
            ``stats.json`` (pass its ``"input"`` or ``"output"`` part if it has them). An
            optional ``"transform"`` key per variable is honoured.
        mean, std
            Alternatively, ``{variable: m}`` and ``{variable: s}`` with the same keys.
        transforms
            ``{variable: transform}``; overrides transforms given in ``stats``.

        Returns
        -------
        Normalizer

        Raises
        ------
        ValueError
            If both or neither of ``stats`` and ``mean``/``std`` are given, keys differ,
            an entry lacks ``mean``/``std``, or a value is not finite (std not positive).

        Examples
        --------
        >>> Normalizer.from_stats({"t2m": {"mean": 280.0, "std": 10.0}}).variables
        ('t2m',)
        >>> Normalizer.from_stats(mean={"tp": 0.1}, std={"tp": 0.3}, transforms={"tp": "log1p"})
        Normalizer(tp: mean=0.1, std=0.3, transform='log1p')
        """
        if (stats is None) == (mean is None and std is None):
            raise ValueError(
                "from_stats needs either stats={var: {'mean': m, 'std': s}} or "
                "mean={var: m} and std={var: s}, not both and not neither"
            )
        if stats is None:
            mean, std = mean or {}, std or {}
            if set(mean) != set(std):
                raise ValueError(
                    f"mean and std must name the same variables; mean has {_names(mean)}, "
                    f"std has {_names(std)}"
                )
            stats = {name: {"mean": mean[name], "std": std[name]} for name in mean}
        transforms = dict(transforms or {})
        unknown = set(transforms) - set(stats)
        if unknown:
            raise ValueError(
                f"transforms names variable(s) {_names(unknown)} without statistics; "
                f"variables with statistics: {_names(stats)}"
            )
        out: dict[str, VariableStats] = {}
        for name, entry in stats.items():
            if not isinstance(entry, Mapping) or "mean" not in entry or "std" not in entry:
                raise ValueError(
                    f"statistics for variable {name!r} must be a mapping with 'mean' and "
                    f"'std', got {entry!r}"
                )
            out[str(name)] = _make_stats(
                name,
                entry["mean"],
                entry["std"],
                transforms.get(name, entry.get("transform", "none")),
            )
        return cls(out)

    @classmethod
    def fit(
        cls,
        data: xr.Dataset | xr.DataArray,
        variables: Sequence[Hashable] | None = None,
        transforms: Mapping[Hashable, Transform] | None = None,
    ) -> Normalizer:
        """Fit per-variable mean and standard deviation over all dimensions.

        Statistics of dask-backed variables are computed together in a single
        :func:`dask.compute` call, accumulating in float64. NaN values are ignored.

        Parameters
        ----------
        data
            A Dataset, or a named DataArray; numpy- or dask-backed.
        variables
            Variables to fit, in channel order; default all data variables.
        transforms
            ``{variable: transform}`` (:mod:`~xcorrdiff.data.transforms`); statistics are
            those of the transformed
            values. Variables not named use ``"none"``.

        Returns
        -------
        Normalizer

        Raises
        ------
        KeyError
            If a variable is not in ``data``.
        ValueError
            If a variable has no finite values, zero variance, or values outside its
            transform's domain (``<= -1`` under ``"log1p"``); if ``transforms`` names a variable not fitted or an unknown
            transform.
        """
        ds = _as_dataset(data, role="data")
        names = list(ds.data_vars) if variables is None else list(variables)
        _require_present(names, ds, role="data")
        transforms = dict(transforms or {})
        extra = set(transforms) - set(names)
        if extra:
            raise ValueError(
                f"transforms names variable(s) {_names(extra)} that are not fitted; "
                f"fitted variables: {_names(names)}"
            )
        for name, transform in transforms.items():
            if transform not in _TRANSFORMS:
                raise ValueError(
                    f"transform for variable {name!r} must be one of {list(_TRANSFORMS)}, "
                    f"got {transform!r}"
                )

        for name in names:
            try:
                _float_dtype(ds[name].dtype)
            except TypeError as exc:
                raise TypeError(f"variable {name!r}: {exc}") from None

        lazy: list[Any] = []
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            # All-NaN data and log1p(-1) are reported below, with the variable's name.
            warnings.simplefilter("ignore", RuntimeWarning)
            for name in names:
                values = ds[name].data
                module: Any = dask.array if isinstance(values, dask.array.Array) else np
                if module is np:
                    # numpy's nanstd subtracts the mean in the input dtype; dask accumulates
                    # in float64 chunk by chunk.
                    values = values.astype(np.float64)
                spec = TRANSFORMS[transforms.get(name, "none")]
                transformed = spec.forward(values.astype(np.float64, copy=False))
                lazy.append(
                    (
                        module.nanmean(transformed, dtype=np.float64),
                        module.nanstd(transformed, dtype=np.float64),
                        module.nanmin(values) if transforms.get(name, "none") != "none" else 0,
                        module.nanmax(values) if transforms.get(name, "none") != "none" else 0,
                    )
                )
            (computed,) = dask.compute(lazy)

        out: dict[str, VariableStats] = {}
        for name, (mean, std, lowest, highest) in zip(names, computed, strict=True):
            transform = transforms.get(name, "none")
            spec = TRANSFORMS[transform]
            if not spec.in_domain(float(lowest), float(highest)):
                raise ValueError(
                    f"variable {name!r} has values from {float(lowest)!r} to {float(highest)!r}; "
                    f"the {transform!r} transform needs {spec.domain}. Clip the data first "
                    "or use transform 'none'"
                )
            mean, std = float(mean), float(std)
            if not (math.isfinite(mean) and math.isfinite(std)):
                raise ValueError(
                    f"variable {name!r} has no finite values to fit (mean {mean}, std "
                    f"{std}); expected data with at least one finite value and no infinities"
                )
            if not std > 1e-12 * abs(mean):
                raise ValueError(
                    f"variable {name!r} has zero variance (constant {mean!r}) and cannot be "
                    "scaled; drop it from variables, or give its statistics with "
                    "Normalizer.from_stats"
                )
            out[str(name)] = VariableStats(mean=mean, std=std, transform=transform)
        return cls(out)

    # --- serialisation ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict; :meth:`from_dict` inverts it exactly.

        Examples
        --------
        >>> import json
        >>> norm = Normalizer.from_stats(mean={"t2m": 280.0}, std={"t2m": 10.0})
        >>> Normalizer.from_dict(json.loads(json.dumps(norm.to_dict()))) == norm
        True
        """
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "variables": {
                name: {"mean": s.mean, "std": s.std, "transform": s.transform}
                for name, s in self.stats.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Normalizer:
        """Rebuild a normalizer from :meth:`to_dict` output.

        Raises
        ------
        ValueError
            If ``data`` is not a normalizer dict of a known version.
        """
        if not isinstance(data, Mapping) or data.get("format") != _FORMAT:
            raise ValueError(
                f"data must be a dict made by Normalizer.to_dict (format {_FORMAT!r}), got "
                f"format {data.get('format') if isinstance(data, Mapping) else None!r}; for "
                "{var: {'mean', 'std'}} statistics use Normalizer.from_stats"
            )
        if data.get("version") != _VERSION:
            raise ValueError(
                f"normalizer dict version {data.get('version')!r} is not supported; "
                f"expected {_VERSION}"
            )
        return cls.from_stats(data["variables"])

    # --- inspection ---------------------------------------------------------------------

    @property
    def variables(self) -> tuple[str, ...]:
        """Variable names in channel order."""
        return tuple(self.stats)

    def __contains__(self, name: object) -> bool:
        return name in self.stats

    def __repr__(self) -> str:
        items = ", ".join(
            f"{name}: mean={s.mean:.6g}, std={s.std:.6g}, transform={s.transform!r}"
            for name, s in self.stats.items()
        )
        return f"Normalizer({items})"

    def select(self, variables: Sequence[Hashable]) -> Normalizer:
        """Return a normalizer with only ``variables``, in that order."""
        self._require_known(variables)
        return Normalizer({str(name): self.stats[str(name)] for name in variables})

    def center_scale(
        self, variables: Sequence[Hashable] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return float64 ``(mean, std)`` vectors in the order of ``variables``."""
        names = self.variables if variables is None else list(variables)
        self._require_known(names)
        mean = np.array([self.stats[str(n)].mean for n in names], dtype=np.float64)
        std = np.array([self.stats[str(n)].std for n in names], dtype=np.float64)
        return mean, std

    def _require_known(self, names: Iterable[Hashable]) -> None:
        unknown = [str(n) for n in names if str(n) not in self.stats]
        if unknown:
            raise KeyError(
                f"the normalizer has no statistics for variable(s) {unknown}; it has "
                f"{list(self.variables)}. Fit it on these variables or pass variables="
            )

    # --- xarray -------------------------------------------------------------------------

    def normalize(self, data: T, variables: Sequence[Hashable] | None = None) -> T:
        """Apply transform, centering and scaling.

        Parameters
        ----------
        data
            A Dataset, or a named DataArray; numpy- or dask-backed (stays lazy).
        variables
            Variables to normalize; default all of the normalizer's variables, which must
            all be present. Other data variables pass through unchanged.

        Returns
        -------
        Dataset or DataArray
            Same type as ``data``; attributes kept; float32 stays float32, integers become
            floating.

        Raises
        ------
        KeyError
            If a variable is missing from ``data`` or from the normalizer.
        """
        return self._apply(data, variables, inverse=False)

    def denormalize(self, data: T, variables: Sequence[Hashable] | None = None) -> T:
        """Invert :meth:`normalize`: scale, shift, then the inverse transform.

        Parameters and raises as :meth:`normalize`.
        """
        return self._apply(data, variables, inverse=True)

    def _apply(self, data: T, variables: Sequence[Hashable] | None, *, inverse: bool) -> T:
        ds = _as_dataset(data, role="data")
        names = list(self.variables if variables is None else variables)
        self._require_known(names)
        _require_present(names, ds, role="data")
        updated = {}
        for name in names:
            s = self.stats[str(name)]
            var = ds[name]
            var = var.astype(_float_dtype(var.dtype), copy=False)
            spec = TRANSFORMS[s.transform]
            if inverse:
                out = spec.inverse(var * s.std + s.mean)
            else:
                out = (spec.forward(var) - s.mean) / s.std
            updated[name] = out.astype(var.dtype, copy=False).assign_attrs(var.attrs)
        result = ds.assign(updated)
        if isinstance(data, xr.DataArray):
            return result[data.name].rename(data.name)
        return result

    # --- arrays -------------------------------------------------------------------------

    def normalize_array(
        self, array: ArrayT, variables: Sequence[Hashable] | None = None, channel_axis: int = -3
    ) -> ArrayT:
        """Normalize a stacked numpy or dask array whose ``channel_axis`` holds ``variables``.

        Parameters
        ----------
        array
            Shape ``(..., channel, y, x)`` (with the default ``channel_axis=-3``).
        variables
            The variable of each channel, in order; default the normalizer's variables.
        channel_axis
            The axis holding the channels.

        Returns
        -------
        array
            Same type and shape; float32 stays float32.

        Raises
        ------
        KeyError
            If a variable has no statistics.
        ValueError
            If the channel axis does not have one entry per variable.
        """
        return self._apply_array(array, variables, channel_axis, inverse=False)

    def denormalize_array(
        self, array: ArrayT, variables: Sequence[Hashable] | None = None, channel_axis: int = -3
    ) -> ArrayT:
        """Invert :meth:`normalize_array`. Parameters as there."""
        return self._apply_array(array, variables, channel_axis, inverse=True)

    def _apply_array(
        self,
        array: Any,
        variables: Sequence[Hashable] | None,
        channel_axis: int,
        *,
        inverse: bool,
    ) -> Any:
        names = list(self.variables if variables is None else variables)
        self._require_known(names)
        ndim = np.ndim(array)
        if not -ndim <= channel_axis < ndim:
            raise ValueError(
                f"channel_axis {channel_axis} is out of range for an array with {ndim} "
                f"dims (shape {np.shape(array)})"
            )
        axis = channel_axis % ndim
        if np.shape(array)[axis] != len(names):
            raise ValueError(
                f"array has {np.shape(array)[axis]} channels on axis {channel_axis} (shape "
                f"{np.shape(array)}), expected {len(names)} for variables {names}"
            )
        dtype = _float_dtype(array.dtype)
        array = array.astype(dtype, copy=False)
        shape = [1] * ndim
        shape[axis] = len(names)
        mean, std = (v.astype(dtype).reshape(shape) for v in self.center_scale(names))
        kinds = [self.stats[str(n)].transform for n in names]
        if inverse:
            return _per_channel(array * std + mean, kinds, shape, inverse=True).astype(dtype)
        return ((_per_channel(array, kinds, shape, inverse=False) - mean) / std).astype(dtype)


def _per_channel(array: Any, kinds: Sequence[str], shape: list[int], *, inverse: bool) -> Any:
    """Each channel through its transform (channels of other transforms see a safe value)."""
    for kind in sorted(set(kinds) - {"none"}):
        spec = TRANSFORMS[kind]
        mask = np.array([k == kind for k in kinds]).reshape(shape)
        fn = spec.inverse if inverse else spec.forward
        array = np.where(mask, fn(np.where(mask, array, spec.safe)), array)
    return array


def _make_stats(name: Hashable, mean: Any, std: Any, transform: Any) -> VariableStats:
    try:
        return VariableStats(mean=_scalar(mean), std=_scalar(std), transform=transform)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"statistics for variable {name!r}: {exc}") from exc


def _scalar(value: Any) -> float:
    array = np.asarray(value)
    if array.size != 1 or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"expected a single number, got {value!r}")
    return float(array.reshape(()))


def _as_dataset(data: xr.Dataset | xr.DataArray, *, role: str) -> xr.Dataset:
    if isinstance(data, xr.Dataset):
        return data
    if isinstance(data, xr.DataArray):
        if data.name is None:
            raise ValueError(
                f"{role} is an unnamed DataArray; name it (da.rename('t2m')) so its "
                "statistics can be looked up"
            )
        return data.to_dataset()
    raise TypeError(f"{role} must be an xarray Dataset or DataArray, got {type(data).__name__}")


def _require_present(names: Iterable[Hashable], ds: xr.Dataset, *, role: str) -> None:
    missing = [str(n) for n in names if n not in ds.data_vars]
    if missing:
        raise KeyError(
            f"variable(s) {missing} are not in the {role}; available data variables: "
            f"{_names(ds.data_vars)}"
        )
