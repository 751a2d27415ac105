"""The CorrDiff model bundle: networks, variables, grids, normalization, sampler defaults.

A :class:`CorrDiffModel` is saved as a directory::

    model_dir/
      config.json              variables (units, long names), invariants, grids, normalization,
                               network constructor arguments, sampler defaults, version,
                               training provenance, and the size and SHA-256 of every
                               other file ("files")
      regression.safetensors   regression UNet weights
      diffusion.safetensors    residual diffusion weights (absent for a regression-only model)
      student.safetensors      a distilled few-step student of the diffusion network (optional;
                               :func:`xcorrdiff.train.distill`)
      grid_hr.nc               HR grid coordinates (netCDF)
      grid_input.nc            input grid coordinates (optional)
      invariants.nc            invariant fields on the HR grid (optional)

Nothing pickled is read back: weights are safetensors, the rest JSON and netCDF, and the
network classes come from a fixed table. :meth:`CorrDiffModel.save` writes into a temporary
directory next to the target and renames it into place. :meth:`CorrDiffModel.load` checks
every file against its recorded size and SHA-256, keeps file names inside the directory and
checks each network against its weights and the machine's memory before building it
(:mod:`xcorrdiff._model_dir`): a damaged or edited directory is an error naming the file.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import xarray as xr

from xcorrdiff._checks import check_choice, check_int, resolve_device
from xcorrdiff._files import publish_dir
from xcorrdiff._model_checks import check_model
from xcorrdiff._model_dir import (
    FORMAT,
    FORMAT_VERSION,
    check_replaceable,
    model_arguments,
    network_entry,
    read_config,
    write_files,
)
from xcorrdiff._version import __version__
from xcorrdiff.config import SamplerConfig, StudentConfig
from xcorrdiff.data.convert import array_to_dataset, dataset_to_array, to_tensor
from xcorrdiff.data.lead_time import map_leads
from xcorrdiff.data.normalize import Normalizer
from xcorrdiff.data.prepare import VariableSpec, prepare_condition
from xcorrdiff.data.time_features import check_time_features, feature_channels
from xcorrdiff.diffusion.conditioning import mean_of_inputs
from xcorrdiff.diffusion.input_skip import InputSkip
from xcorrdiff.diffusion.patching import PatchGrid, regression_grid
from xcorrdiff.options import OPTIONS

__all__ = ["CorrDiffModel", "load_model"]


class CorrDiffModel:
    """A trained (or imported) CorrDiff model: two networks plus everything to use them.

    Parameters
    ----------
    regression : torch.nn.Module or None
        Regression UNet (:class:`xcorrdiff.nn.UNet`) predicting the conditional mean μ;
        None for a model that generates whole fields (a :class:`~xcorrdiff.nn.FlowDiT`).
    diffusion : torch.nn.Module or None
        Residual denoiser (:class:`xcorrdiff.nn.EDMPrecondSuperResolution`); ``None`` for a
        model whose diffusion stage is not trained yet.
    input_variables : sequence of VariableSpec
        Inputs read from the LR data, in channel order, with the units the model uses.
    output_variables : sequence of VariableSpec
        Outputs, in channel order.
    grid : xarray.Dataset
        HR grid coordinates (``y``, ``x`` and ``lat``/``lon``).
    grid_dims : (str, str), default ("y", "x")
        Row and column dimensions of ``grid``.
    input_grid : xarray.Dataset, optional
        Grid of the training inputs (informative; any rectilinear LR grid is regridded).
    invariants : xarray.Dataset, optional
        Static fields on the HR grid, appended to the inputs (physical units).
    time_features : sequence of str, default ()
        Channels computed from each time, appended last (``"cos_zenith"``, ``"hour_of_day"``,
        ``"day_of_year"``; :mod:`xcorrdiff.data.time_features`).
    lead_times : sequence of timedelta64, default ()
        The lead times of a lead-time-aware model, in label order
        (:mod:`xcorrdiff.data.lead_time`); empty for other models.
    input_normalizer, output_normalizer : Normalizer
        Statistics of the condition's channels, and of the outputs.
    sampler : SamplerConfig, optional
        Default sampler settings.
    conditioning : mapping, optional
        How the diffusion condition is assembled: ``{"hr_mean": bool,
        "global_lowres": bool}``. ``global_lowres`` appends the whole-domain input resized
        to the patch (PhysicsNeMo's patch-based conditioning, ``C_hr + 2 C_lr`` channels).
        ``"regression_patch": [h, w]`` marks a regression network trained on patches
        (``TrainConfig.regression_patch_shape``): it takes the whole-domain input as global
        context too (``2 C_lr`` channels) and μ is computed patch by patch.
        ``"input_skip": {output: {"input": name, "spread": γ}}`` marks a regression that
        predicts those outputs as their own input plus its correction
        (``TrainConfig.input_skip``, :mod:`xcorrdiff.diffusion.input_skip`).
    regrid_method : str, default "bilinear"
        Interpolation of the inputs onto the HR grid.
    residual_scale : mapping of str to float, optional
        Per-output scale of the residual the diffusion network generates, in normalized
        units: members are ``μ + s · r`` (see ``TrainConfig.residual_scaling``). ``None``
        (PhysicsNeMo's CorrDiff, imported checkpoints) means 1 for every output.
    output_bounds : mapping of str to (float, float), optional
        Physical bounds ``(low, high)`` of output variables in their units (``±inf``:
        unbounded), applied to every downscaled member and mean.
    observed : xarray.Dataset, optional
        Per output variable, a boolean field on the HR grid: True where the training targets
        had data at least once (a land-only data set: False over the ocean). Downscaled
        output is NaN where it is False. ``None``: observed everywhere.
    provenance : mapping, optional
        Free-form JSON-able record (training configuration, data, durations...).
    student : torch.nn.Module, optional
        A few-step student of ``diffusion`` (:func:`xcorrdiff.train.distill`), the same
        class; needs ``student_config``.
    student_config : StudentConfig, optional
        The student's sampler and whether ``downscale`` uses it by default.
    """

    def __init__(
        self,
        *,
        regression: torch.nn.Module | None,
        diffusion: torch.nn.Module | None,
        input_variables: Sequence[VariableSpec],
        output_variables: Sequence[VariableSpec],
        grid: xr.Dataset,
        grid_dims: tuple[str, str] = ("y", "x"),
        input_grid: xr.Dataset | None = None,
        invariants: xr.Dataset | None = None,
        time_features: Sequence[str] = (),
        lead_times: Sequence[Any] = (),
        input_normalizer: Normalizer,
        output_normalizer: Normalizer,
        sampler: SamplerConfig | None = None,
        conditioning: Mapping[str, Any] | None = None,
        regrid_method: str = "bilinear",
        residual_scale: Mapping[str, float] | None = None,
        output_bounds: Mapping[str, Sequence[float | None]] | None = None,
        observed: xr.Dataset | None = None,
        provenance: Mapping[str, Any] | None = None,
        student: torch.nn.Module | None = None,
        student_config: StudentConfig | None = None,
    ) -> None:
        self.regression = regression.eval() if regression is not None else None
        self.diffusion = diffusion.eval() if diffusion is not None else None
        self.student = student.eval() if student is not None else None
        self.student_config = student_config
        self.input_variables = tuple(input_variables)
        self.output_variables = tuple(output_variables)
        self.grid = grid
        self.grid_dims = (str(grid_dims[0]), str(grid_dims[1]))
        self.input_grid = input_grid
        self.invariants = invariants if invariants is not None and invariants.data_vars else None
        self.time_features = check_time_features(time_features)
        self.lead_times = tuple(np.asarray(lead_times, dtype="timedelta64[ns]").reshape(-1))
        self.input_normalizer = input_normalizer
        self.output_normalizer = output_normalizer
        self.sampler = sampler if sampler is not None else SamplerConfig()
        self.conditioning = dict(conditioning or {"hr_mean": True, "global_lowres": True})
        self.regrid_method = regrid_method
        self.residual_scale = (
            {str(k): float(v) for k, v in residual_scale.items()}
            if residual_scale is not None
            else None
        )
        self.output_bounds = {
            str(k): (_bound(v[0], -math.inf), _bound(v[1], math.inf))
            for k, v in (output_bounds or {}).items()
        }
        self.observed = observed.astype(bool) if observed is not None else None
        self.provenance = dict(provenance or {})
        self._validate()

    def _validate(self) -> None:
        check_model(self)

    # --- description ----------------------------------------------------------------------

    @property
    def input_names(self) -> tuple[str, ...]:
        """Names of the input variables, in channel order."""
        return tuple(v.name for v in self.input_variables)

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the output variables, in channel order."""
        return tuple(v.name for v in self.output_variables)

    @property
    def invariant_names(self) -> tuple[str, ...]:
        """Names of the invariants, in channel order (after the inputs)."""
        return tuple(map(str, self.invariants.data_vars)) if self.invariants is not None else ()

    @property
    def condition_variables(self) -> tuple[str, ...]:
        """Channels of the network condition: inputs, invariants, then time features."""
        return (*self.input_names, *self.invariant_names, *feature_channels(self.time_features))

    @property
    def regression_patch(self) -> tuple[int, int] | None:
        """Patch size of a regression network trained on patches, else None."""
        patch = self.conditioning.get("regression_patch")
        return (int(patch[0]), int(patch[1])) if patch else None

    def regression_grid(self) -> PatchGrid | None:
        """The patches μ is computed on (a quarter-patch overlap, tapered blending), or
        None for a whole-domain regression."""
        return regression_grid(self.shape, self.regression_patch)

    def regression_skip(self) -> InputSkip | None:
        """The regression's input skip (:mod:`xcorrdiff.diffusion.input_skip`): outputs
        predicted as their own input plus the network's correction; None without one."""
        spec = self.conditioning.get("input_skip")
        if not spec:
            return None
        return InputSkip.build(
            spec, condition_variables=self.condition_variables,
            output_variables=self.output_names, input_normalizer=self.input_normalizer,
            output_normalizer=self.output_normalizer,
        )  # fmt: skip

    @property
    def shape(self) -> tuple[int, int]:
        """HR grid shape ``(y, x)``."""
        return (int(self.grid.sizes[self.grid_dims[0]]), int(self.grid.sizes[self.grid_dims[1]]))

    def __repr__(self) -> str:
        stage = "regression + diffusion" if self.diffusion is not None else "regression only"
        stage = stage if self.regression is not None else "rectified-flow DiT"
        stage += " + student" if self.student is not None else ""
        return (
            f"<CorrDiffModel ({stage}) inputs={list(self.input_names)} "
            f"invariants={list(self.invariant_names)} outputs={list(self.output_names)} "
            f"grid={self.shape}>"
        )

    # --- use ------------------------------------------------------------------------------

    def prepare(self, lr: xr.Dataset) -> xr.Dataset:
        """Normalized network condition on the HR grid (the step training used).

        See :func:`xcorrdiff.data.prepare.prepare_condition`.
        """
        return prepare_condition(
            lr,
            input_variables=self.input_variables,
            grid=self.grid,
            invariants=self.invariants,
            normalizer=self.input_normalizer,
            grid_dims=self.grid_dims,
            regrid_method=self.regrid_method,  # type: ignore[arg-type]
            time_features=self.time_features,
        )

    def regression_mean(
        self,
        lr: xr.Dataset,
        *,
        batch_size: int = 8,
        device: str | torch.device | None = None,
    ) -> xr.Dataset:
        """The regression network's conditional mean μ, in physical units on the HR grid.

        Parameters
        ----------
        lr : xarray.Dataset
            Low-resolution inputs (loaded into memory batch by batch); forecasts on
            ``(time, lead_time, ...)`` for a lead-time-aware model.
        batch_size : int, default 8
            Times per forward pass.
        device : str or torch.device, optional
            Where to compute (the model moves there, as with :meth:`to`). Default: the
            option ``device`` of :func:`xcorrdiff.set_options` when set, else where the
            model is.

        Returns
        -------
        xarray.Dataset
            The output variables on ``(time, y, x)`` with their units (``(time, lead_time,
            y, x)`` and a ``valid_time`` for a lead-time-aware model).
        """
        batch_size = check_int("batch_size", batch_size, minimum=1)
        if self.regression is None:
            raise ValueError("this model has no regression stage: it generates whole fields")
        if device is not None or OPTIONS["device"] is not None:
            self.to(device)
        if self.lead_times:
            return map_leads(lr, self.lead_times, lambda sub, k: self._mean(sub, batch_size, k))
        return self._mean(lr, batch_size, None)

    def _mean(self, lr: xr.Dataset, batch_size: int, lead: int | None) -> xr.Dataset:
        assert self.regression is not None  # checked by regression_mean
        condition = self.prepare(lr)
        array = dataset_to_array(
            condition, list(self.condition_variables), dims=("time", *self.grid_dims)
        )
        device = next(self.regression.parameters()).device
        n_out, skip = len(self.output_variables), self.regression_skip()
        chunks = []
        with torch.no_grad():
            for start in range(0, array.shape[0], batch_size):
                block = np.asarray(array[start : start + batch_size])
                x = to_tensor(block, device=device)
                labels = None if lead is None else torch.full((x.shape[0],), lead, device=device)
                mu = mean_of_inputs(self.regression, x, n_out, self.regression_grid(), labels, skip)
                chunks.append(mu.cpu().numpy())
        mean = np.concatenate(chunks, axis=0) if chunks else np.zeros((0, n_out, *self.shape))
        out = array_to_dataset(
            mean,
            list(self.output_names),
            coords={"time": condition["time"], **dict(self.grid.coords.items())},
            attrs={
                v.name: {"units": v.units, "long_name": v.long_name} for v in self.output_variables
            },
            dims=("time", *self.grid_dims),
        )
        return self.finish(self.output_normalizer.denormalize(out))

    def finish(
        self, ds: xr.Dataset, *, region: tuple[int, int, int, int] | None = None
    ) -> xr.Dataset:
        """Downscaled fields made physical: clipped to ``output_bounds``, NaN where never
        observed (:meth:`mask_unobserved`; ``region``: the ``(y0, y1, x0, x1)`` of the grid
        that ``ds`` covers); ``{name}_mean`` variables follow ``name``."""
        clipped = {}
        for name in ds.data_vars:
            base = str(name) if name in self.output_bounds else str(name).removesuffix("_mean")
            if base in self.output_bounds:
                low, high = self.output_bounds[base]
                clipped[name] = ds[name].clip(
                    None if math.isinf(low) else low, None if math.isinf(high) else high
                )
        return self.mask_unobserved(ds.assign(clipped), region=region)

    def mask_unobserved(
        self, ds: xr.Dataset, *, region: tuple[int, int, int, int] | None = None
    ) -> xr.Dataset:
        """``ds`` with NaN where the training targets never had data (see ``observed``);
        ``{name}_mean`` variables follow ``name``."""
        if self.observed is None:
            return ds
        observed = self.observed
        if region is not None:
            y0, y1, x0, x1 = region
            y_dim, x_dim = self.grid_dims
            observed = observed.isel({y_dim: slice(y0, y1), x_dim: slice(x0, x1)})
        masked = {}
        for name in ds.data_vars:
            base = str(name) if name in self.observed else str(name).removesuffix("_mean")
            if base in observed:
                masked[name] = ds[name].where(observed[base].variable)
        return ds.assign(masked)

    def networks(self) -> dict[str, torch.nn.Module]:
        """The networks the model has, by role: ``"regression"``, then ``"diffusion"`` and
        ``"student"`` when present (each saved as ``<role>.safetensors``)."""
        roles = {
            "regression": self.regression,
            "diffusion": self.diffusion,
            "student": self.student,
        }
        return {role: net for role, net in roles.items() if net is not None}

    def to(self, device: str | torch.device | None) -> CorrDiffModel:
        """Move the networks to ``device`` (in place; ``None``: the option ``device``, else
        CUDA when available, else the CPU); returns ``self``."""
        device = resolve_device(device)
        for net in self.networks().values():
            net.to(device)
        return self

    # --- persistence ----------------------------------------------------------------------

    def config_dict(self) -> dict[str, Any]:
        """The content of ``config.json``."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "xcorrdiff_version": __version__,
            "input_variables": [v.to_dict() for v in self.input_variables],
            "output_variables": [v.to_dict() for v in self.output_variables],
            "invariants": [
                {
                    "name": name,
                    "units": str(self.invariants[name].attrs.get("units", "")),
                    "long_name": str(self.invariants[name].attrs.get("long_name", "")),
                }
                for name in self.invariant_names
            ]
            if self.invariants is not None
            else [],
            "time_features": list(self.time_features),
            "lead_times_s": [int(v // np.timedelta64(1, "s")) for v in self.lead_times],
            "grid": {"file": "grid_hr.nc", "dims": list(self.grid_dims), "shape": list(self.shape)},
            "input_grid": {"file": "grid_input.nc"} if self.input_grid is not None else None,
            "observed": {"file": "observed.nc"} if self.observed is not None else None,
            "output_bounds": {
                k: [None if math.isinf(v) else v for v in pair]
                for k, pair in self.output_bounds.items()
            },
            "normalization": {
                "input": self.input_normalizer.to_dict(),
                "output": self.output_normalizer.to_dict(),
            },
            "networks": {
                "regression": network_entry(self.regression) if self.regression else None,
                "diffusion": network_entry(self.diffusion) if self.diffusion is not None else None,
                **({"student": network_entry(self.student)} if self.student is not None else {}),
            },
            "conditioning": dict(self.conditioning),
            "regrid_method": self.regrid_method,
            "residual_scale": self.residual_scale,
            "sampler": self.sampler.to_dict(),
            **({"student": self.student_config.to_dict()} if self.student_config else {}),
            "provenance": self.provenance,
        }

    def save(
        self,
        path: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        format: Literal["xcorrdiff", "earth2studio"] = "xcorrdiff",
    ) -> Path:
        """Write the model directory atomically.

        Parameters
        ----------
        path : path-like
            Target directory.
        overwrite : bool, default False
            Replace an existing model directory or package (one xcorrdiff saved, holding
            nothing else) or an empty folder; anything else is refused.
        format : {"xcorrdiff", "earth2studio"}, default "xcorrdiff"
            ``"xcorrdiff"``: safetensors weights, ``config.json`` and netCDF grids.
            ``"earth2studio"``: the generic Earth2Studio CorrDiff package
            (``regression.mdlus``, ``diffusion.mdlus``, ``metadata.json``, ``stats.json``,
            ``output_latlon_grid.nc``, optional ``input_latlon_grid.nc`` and
            ``invariants.nc``), which :meth:`from_earth2studio` reads back bit for bit. A
            model with what that layout cannot hold (a ``log1p`` transform, a residual scale,
            a land-only mask) is refused with a message.

        Returns
        -------
        pathlib.Path
            ``path``.

        Raises
        ------
        FileExistsError
            ``path`` exists and ``overwrite`` is False, or it is not a model directory
            xcorrdiff saved.
        ValueError
            ``format`` is unknown, or the model cannot be written in it.
        """
        from xcorrdiff.io.earth2studio import check_exportable, write_package

        check_choice("format", format, ("xcorrdiff", "earth2studio"))
        if format == "earth2studio":
            check_exportable(self)
        target = Path(path)
        if target.exists() or target.is_symlink():
            if not overwrite:
                raise FileExistsError(
                    f"path={os.fspath(target)!r} already exists; pass overwrite=True to replace it"
                )
            check_replaceable(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
        networks = self.networks()
        datasets = {"grid_hr.nc": self.grid}
        if self.input_grid is not None:
            datasets["grid_input.nc"] = self.input_grid
        if self.invariants is not None:
            datasets["invariants.nc"] = self.invariants
        if self.observed is not None:
            datasets["observed.nc"] = self.observed.astype(np.uint8)
        try:
            if format == "earth2studio":
                write_package(self, tmp)
            else:
                write_files(tmp, self.config_dict(), networks, datasets)
            publish_dir(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, device: str | torch.device | None = None
    ) -> CorrDiffModel:
        """Read a directory written by :meth:`save`.

        Raises
        ------
        FileNotFoundError
            ``path`` or one of its files is missing.
        ValueError
            ``config.json`` is not an xcorrdiff model of a supported version.
        """
        root = Path(path)
        config = read_config(root)
        try:
            return cls(**model_arguments(root, config)).to(device)
        except (KeyError, TypeError, IndexError) as exc:
            raise ValueError(
                f"{root / 'config.json'} lacks or garbles the entry {exc}; the model directory "
                "is damaged: restore it from a backup or save the model again"
            ) from None

    @classmethod
    def from_earth2studio(
        cls, package_dir: str | os.PathLike[str], *, device: str | torch.device | None = None
    ) -> CorrDiffModel:
        """Import an Earth2Studio / NGC CorrDiff package directory.

        Parameters
        ----------
        package_dir : path-like
            Directory with ``diffusion.mdlus``, ``regression.mdlus``, ``metadata.json``
            (``input_variables``, ``output_variables``, optional ``invariant_variables``,
            ``number_of_steps``, ``solver``, ``hr_mean_conditioning``, ``sigma_min``,
            ``sigma_max``), ``stats.json`` (``input``/``output``/``invariants`` →
            ``{variable: {"mean", "std"}}``), ``output_latlon_grid.nc`` (``lat``, ``lon``)
            and optionally ``input_latlon_grid.nc`` and ``invariants.nc``.
        device : str or torch.device, optional
            Where the networks go; default CUDA when available, else the CPU.

        Returns
        -------
        CorrDiffModel
            Units of well-known Earth2Studio variable names are filled in (``t2m`` → K,
            ``u10m`` → m s-1, ...); others are left empty (no conversion at prepare).

        Raises
        ------
        FileNotFoundError
            A required file is missing (the message lists them).
        KeyError
            ``stats.json`` lacks statistics for a variable.
        """
        from xcorrdiff.io.earth2studio import read_package

        return cls(**read_package(package_dir)).to(device)


def _bound(value: float | None, default: float) -> float:
    return default if value is None else float(value)


#: The small model shipped with xcorrdiff (``load_model("demo")``; ``examples/train_demo_model.py``).
DEMO_MODEL_DIR = Path(__file__).resolve().parent / "models" / "demo"


def load_model(
    path: str | os.PathLike[str], *, device: str | torch.device | None = None
) -> CorrDiffModel:
    """Load a model saved with :meth:`CorrDiffModel.save`, or the packaged demo model.

    Parameters
    ----------
    path : path-like
        Model directory, or ``"demo"``: the small model shipped with xcorrdiff, trained on
        :func:`xcorrdiff.tutorial.make_synthetic` data (128×128, factor 8) by
        ``examples/train_demo_model.py`` (write ``"./demo"`` for a local folder of that name).
    device : str or torch.device, optional
        Where the networks go; default: the option ``device``, else CUDA when available,
        else the CPU.

    Returns
    -------
    CorrDiffModel
    """
    if isinstance(path, str) and path == "demo":
        path = DEMO_MODEL_DIR
    return CorrDiffModel.load(path, device=device)
