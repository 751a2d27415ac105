"""The model directory on disk: writing it, and reading it back only when it is intact.

``config.json`` records every other file of the directory with its size and SHA-256
(``"files"``, format version 2); :func:`read_config` checks them all before anything is
parsed, so a truncated, bit-flipped or swapped file is an error that names it instead of a
model that loads silently with other weights. File names in the config must be plain names
inside the directory, and each network is checked against its weight file's tensors (names,
shapes) and the machine's memory before it is built (:func:`xcorrdiff.nn.registry.build_network`).
Version-1 directories (no checksums) still load, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from xcorrdiff._files import file_record, member_path, verify_file
from xcorrdiff.config import SamplerConfig, StudentConfig
from xcorrdiff.data.normalize import Normalizer
from xcorrdiff.data.prepare import VariableSpec
from xcorrdiff.nn.registry import NETWORK_CLASSES, build_network

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "check_replaceable",
    "hash_tensors",
    "model_arguments",
    "network_entry",
    "read_config",
    "read_dataset",
    "read_netcdf",
    "read_network",
    "state_digest",
    "state_tensors",
    "write_files",
]

FORMAT = "xcorrdiff-model"
FORMAT_VERSION = 2
_READABLE = (1, 2)
_MAX_CONFIG_BYTES = 64 << 20


def _clean_attrs(ds: xr.Dataset) -> xr.Dataset:
    """Drop attributes netCDF cannot store (None, nested mappings)."""
    ds = ds.copy()

    def ok(value: Any) -> bool:
        return isinstance(value, (str, int, float, np.number, np.ndarray, list, tuple))

    ds.attrs = {k: v for k, v in ds.attrs.items() if ok(v)}
    for name in ds.variables:
        ds[name].attrs = {k: v for k, v in ds[name].attrs.items() if ok(v)}
        ds[name].encoding = {}
    return ds


def network_entry(net: torch.nn.Module) -> dict[str, Any]:
    """The ``config.json`` entry of a network: its class and constructor arguments."""
    name = type(net).__name__
    if NETWORK_CLASSES.get(name) is not type(net):
        raise TypeError(
            f"network of class {name} cannot be stored in a CorrDiffModel; expected one of "
            f"{sorted(NETWORK_CLASSES)}"
        )
    config = getattr(net, "config", None)
    if not isinstance(config, Mapping):
        raise TypeError(f"network {name} has no constructor arguments in .config")
    return {"class": name, "kwargs": dict(config)}


def state_tensors(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A state dict safetensors can store (no shared storage, contiguous, on the CPU)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in net.state_dict().items()}


def write_files(
    folder: Path,
    config: Mapping[str, Any],
    networks: Mapping[str, torch.nn.Module],
    datasets: Mapping[str, xr.Dataset],
) -> None:
    """Write weights (``<role>.safetensors``) and netCDF files, then ``config.json`` with
    their sizes and SHA-256 (written last: a folder without it is not a model)."""
    for role, net in networks.items():
        save_file(state_tensors(net), folder / f"{role}.safetensors")
    for name, ds in datasets.items():
        _clean_attrs(ds).to_netcdf(folder / name)
    records = {p.name: file_record(p) for p in sorted(folder.iterdir()) if p.is_file()}
    document = {**config, "format": FORMAT, "format_version": FORMAT_VERSION, "files": records}
    (folder / "config.json").write_text(
        json.dumps(document, indent=2, allow_nan=True), encoding="utf-8"
    )


_MODEL_FILES = frozenset(
    {"config.json", "regression.safetensors", "diffusion.safetensors", "student.safetensors",
     "grid_hr.nc", "grid_input.nc", "invariants.nc", "observed.nc"}
)  # fmt: skip
# The files of an Earth2Studio package (CorrDiffModel.save(format="earth2studio")).
_PACKAGE_FILES = frozenset(
    {"regression.mdlus", "diffusion.mdlus", "metadata.json", "stats.json",
     "output_latlon_grid.nc", "input_latlon_grid.nc", "invariants.nc"}
)  # fmt: skip


def _written_by_us(target: Path) -> frozenset[str]:
    """The files of the model directory or package xcorrdiff wrote at ``target``, or none."""
    for document, key, files in (
        ("config.json", "format", _MODEL_FILES),
        ("metadata.json", "xcorrdiff", _PACKAGE_FILES),
    ):
        try:
            content = json.loads((target / document).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(content, dict) and (
            content.get(key) == FORMAT if key == "format" else key in content
        ):
            return files
    return frozenset()


def check_replaceable(target: Path) -> None:
    """Refuse to replace anything but an empty folder or a model directory xcorrdiff wrote.

    Raises
    ------
    FileExistsError
        ``target`` is a file, or a folder that holds files a model directory does not
        (they are named), or one without an xcorrdiff ``config.json``.
    """
    if not target.is_dir() or target.is_symlink():
        raise FileExistsError(
            f"path={os.fspath(target)!r} exists and is not a folder; a model is saved only over "
            "a model directory xcorrdiff wrote. Choose another path"
        )
    entries = sorted(p.name for p in target.iterdir())
    if not entries:
        return
    ours = _written_by_us(target)
    foreign = [e for e in entries if e not in ours]
    if not ours or foreign:
        what = f"holds {foreign[:5]}, which" if foreign else "is a folder"
        raise FileExistsError(
            f"path={os.fspath(target)!r} {what} xcorrdiff did not write (it replaces only model "
            "directories it saved); refusing to replace it. Choose another path"
        )


def read_config(root: Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a model directory, after checking every file it lists.

    Raises
    ------
    FileNotFoundError
        No ``config.json``, or a listed file is missing.
    ValueError
        ``config.json`` is not JSON, not an xcorrdiff model, of an unknown version, lists
        paths outside the directory, or a listed file's size or SHA-256 differs.
    """
    path = root / "config.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"path={os.fspath(root)!r} is not a CorrDiff model directory (no config.json); "
            "expected a directory written by CorrDiffModel.save"
        )
    if path.stat().st_size > _MAX_CONFIG_BYTES:
        raise ValueError(f"{path} is larger than 64 MiB; it is not a model's config.json")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"{path} is not valid JSON ({exc}); the model directory is damaged: restore it "
            "from a backup or save the model again"
        ) from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise ValueError(f"{path} has format {found!r}; expected {FORMAT!r}")
    version = config.get("format_version")
    if version not in _READABLE:
        raise ValueError(
            f"{path} has format_version {version!r}; this xcorrdiff reads versions "
            f"{list(_READABLE)} (upgrade xcorrdiff to read newer models)"
        )
    if version == 1:
        warnings.warn(
            f"{path} is a format-1 model without checksums: its files are not verified. Save "
            "it again (xcorrdiff.load_model(path).save(new_path)) to record them",
            UserWarning,
            stacklevel=3,
        )
        return config
    files = config.get("files")
    if not isinstance(files, dict) or not files:
        raise ValueError(f"{path}: the 'files' table (sizes and SHA-256) is missing or empty")
    for name, record in files.items():
        verify_file(member_path(root, name, where=str(path)), record, where=str(path))
    return config


def _listed(root: Path, config: Mapping[str, Any], name: object) -> Path:
    """A file the config names: a plain name inside ``root`` and (version 2) checksummed."""
    where = str(root / "config.json")
    path = member_path(root, name, where=where)
    if config.get("format_version", 1) >= 2 and name not in config.get("files", {}):
        raise ValueError(f"{where} names {name!r} but its 'files' table has no checksum for it")
    return path


def read_network(root: Path, config: Mapping[str, Any], role: str) -> torch.nn.Module | None:
    """The ``role`` network ("regression", "diffusion" or "student"), or ``None`` if the
    model has none.

    The weight file's header (tensor names and shapes) is read first; the network described
    by the config must match it before the network is built and the weights are loaded.
    """
    entry = config["networks"].get(role)
    if entry is None:
        return None
    path = _listed(root, config, f"{role}.safetensors")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            shapes = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own error type on damaged files
        raise ValueError(
            f"{path} is not a readable safetensors file ({type(exc).__name__}: {exc}); restore "
            "it from a backup or save the model again"
        ) from None
    if not isinstance(entry, dict) or not isinstance(entry.get("kwargs"), dict):
        raise ValueError(f"{root / 'config.json'}: networks.{role} must hold 'class' and 'kwargs'")
    net = build_network(
        entry.get("class"),
        entry["kwargs"],
        where=f"{root / 'config.json'} (networks.{role})",
        state_shapes=shapes,
        weights=path.name,
    )
    net.load_state_dict(load_file(path), strict=True)
    return net


def read_dataset(root: Path, config: Mapping[str, Any], name: object) -> xr.Dataset:
    """A netCDF file of the directory (grid or invariants), loaded into memory."""
    return read_netcdf(_listed(root, config, name))


def read_netcdf(path: Path) -> xr.Dataset:
    """A netCDF file loaded into memory; an unreadable one is an error naming it."""
    try:
        with xr.open_dataset(path) as ds:
            return ds.load()
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"{path} could not be read as netCDF ({exc}); restore it from a backup or save the "
            "model again"
        ) from None


def hash_tensors(digest: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Feed named tensors to a hashlib ``digest``: per name (sorted), ``name:dtype:shape``
    and the bytes in C order, whatever the memory format or device. Returns ``digest``."""
    for key in sorted(tensors):
        tensor = tensors[key].detach().to("cpu")
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        flat = tensor.reshape(-1).clone()  # C order, stride 1, whatever the memory format
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest


def state_digest(net: torch.nn.Module) -> str:
    """SHA-256 of a network's state dict (names, dtypes, shapes and bytes)."""
    return str(hash_tensors(hashlib.sha256(), net.state_dict()).hexdigest())


def model_arguments(root: Path, config: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`~xcorrdiff.model.CorrDiffModel` arguments that ``config.json`` and the
    files beside it hold (networks and datasets checked as they are read)."""
    invariants = None
    if config.get("invariants"):
        invariants = read_dataset(root, config, "invariants.nc")
        invariants = invariants[[v["name"] for v in config["invariants"]]]
    optional = {
        name: read_dataset(root, config, config[key]["file"]) if config.get(key) else None
        for name, key in (("input_grid", "input_grid"), ("observed", "observed"))
    }
    return {
        "regression": read_network(root, config, "regression"),
        "diffusion": read_network(root, config, "diffusion"),
        "student": read_network(root, config, "student"),
        "student_config": StudentConfig.from_dict(config["student"])
        if "student" in config
        else None,
        "input_variables": [VariableSpec.from_dict(v) for v in config["input_variables"]],
        "output_variables": [VariableSpec.from_dict(v) for v in config["output_variables"]],
        "grid": read_dataset(root, config, config["grid"]["file"]),
        "grid_dims": (str(config["grid"]["dims"][0]), str(config["grid"]["dims"][1])),
        "invariants": invariants,
        "time_features": config.get("time_features", []),
        "lead_times": np.array(config.get("lead_times_s", []), dtype="timedelta64[s]"),
        "input_normalizer": Normalizer.from_dict(config["normalization"]["input"]),
        "output_normalizer": Normalizer.from_dict(config["normalization"]["output"]),
        "sampler": SamplerConfig.from_dict(config["sampler"]),
        "conditioning": config.get("conditioning"),
        "regrid_method": config.get("regrid_method", "bilinear"),
        "residual_scale": config.get("residual_scale"),
        "output_bounds": config.get("output_bounds"),
        "provenance": config.get("provenance"),
        **optional,
    }
