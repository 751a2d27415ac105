"""Import of PhysicsNeMo ``.mdlus`` checkpoints (CorrDiff networks) into xcorrdiff modules.

A ``.mdlus`` file is a zip archive (PhysicsNeMo >= 1.x) or, in older releases, a tar
archive holding ``args.json`` (``{"__name__", "__module__", "__args__"}``: the class and
its constructor arguments), ``metadata.json`` and ``model.pt`` (a ``state_dict`` written
by ``torch.save``). We read the class *name* only (``__module__`` is never imported),
build our own module from ``__args__`` and load ``model.pt`` with
``torch.load(weights_only=True)``, which refuses pickles that would run code.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import tarfile
import zipfile
from collections.abc import Mapping
from typing import Any

import torch

from .layers import PositionalEmbedding
from .registry import NETWORK_CLASSES, build_network

__all__ = [
    "SUPPORTED_CLASSES",
    "load_physicsnemo",
    "read_mdlus",
    "rename_legacy_keys",
    "save_physicsnemo",
]

#: The classes a checkpoint may name (the table of :mod:`xcorrdiff.nn.registry`).
#: The PhysicsNeMo classes (xcorrdiff's ``FlowDiT`` wrapper is not one).
SUPPORTED_CLASSES: dict[str, type[torch.nn.Module]] = {
    k: v for k, v in NETWORK_CLASSES.items() if k != "FlowDiT"
}

_REQUIRED_MEMBERS = ("args.json", "model.pt")
_MAX_JSON_BYTES = 1 << 20

_LEGACY_ATTENTION_KEYS = {
    "norm2.weight": "attn.norm.weight",
    "norm2.bias": "attn.norm.bias",
    "qkv.weight": "attn.qkv.weight",
    "qkv.bias": "attn.qkv.bias",
    "proj.weight": "attn.proj.weight",
    "proj.bias": "attn.proj.bias",
}


#: The PhysicsNeMo 2.2.2 module of each class, written to ``args.json`` by :func:`save_physicsnemo`.
PHYSICSNEMO_MODULES = {
    "UNet": "physicsnemo.models.diffusion_unets.unet",
    "CorrDiffRegressionUNet": "physicsnemo.models.diffusion_unets.unet",
    "EDMPrecondSuperResolution": "physicsnemo.diffusion.preconditioners.legacy",
    "EDMPrecondSR": "physicsnemo.diffusion.preconditioners.legacy",
    "SongUNet": "physicsnemo.models.diffusion_unets.song_unet",
    "SongUNetPosEmbd": "physicsnemo.models.diffusion_unets.song_unet",
    "SongUNetPosLtEmbd": "physicsnemo.models.diffusion_unets.song_unet",
    "DiT": "physicsnemo.models.dit.dit",
}
#: PhysicsNeMo 2.2.2's ``__model_checkpoint_version__`` of each class: its loader reads a
#: checkpoint's ``mdlus_file_version`` as the class's version and refuses any other it
#: cannot map (Earth2Studio 0.19 refused our EDMPrecondSuperResolution written as "0.2.0").
CHECKPOINT_VERSIONS = {
    "UNet": "0.2.0",
    "CorrDiffRegressionUNet": "0.2.0",
    "EDMPrecondSuperResolution": "0.1.0",
    "EDMPrecondSR": "0.1.0",
    "SongUNet": "0.1.0",
    "SongUNetPosEmbd": "0.1.0",
    "SongUNetPosLtEmbd": "0.1.0",
    "DiT": "0.2.0",
}


class CheckpointError(ValueError):
    """A file that is not a readable CorrDiff ``.mdlus`` checkpoint."""


def read_mdlus(
    path: str | os.PathLike[str],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, torch.Tensor]]:
    """Read the parts of a ``.mdlus`` checkpoint without building a module.

    Parameters
    ----------
    path : str or path-like
        A ``.mdlus`` file (zip or legacy tar).

    Returns
    -------
    args : dict
        Parsed ``args.json``.
    metadata : dict
        Parsed ``metadata.json`` (empty if absent).
    state_dict : dict of str to Tensor
        Weights on the CPU.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    CheckpointError
        If the file is neither zip nor tar, misses ``args.json``/``model.pt``, or
        ``model.pt`` is not a plain tensor state_dict (e.g. a pickle that would execute
        code: it is refused by ``torch.load(weights_only=True)``, never run).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    members = _read_members(path)
    for name in _REQUIRED_MEMBERS:
        if name not in members:
            raise CheckpointError(
                f"{path!r} is not a PhysicsNeMo checkpoint: it has no {name!r} "
                f"(found {sorted(members) or 'nothing'}; expected args.json, metadata.json, model.pt)"
            )
    args = _parse_json(path, "args.json", members["args.json"])
    metadata = (
        _parse_json(path, "metadata.json", members["metadata.json"])
        if "metadata.json" in members
        else {}
    )
    try:
        state_dict = torch.load(
            io.BytesIO(members["model.pt"]), map_location="cpu", weights_only=True
        )
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path!r}: model.pt is not a plain tensor state_dict (or is corrupt); "
            f"torch.load(weights_only=True) refused it without executing anything: {exc}"
        ) from exc
    except Exception as exc:  # torch raises RuntimeError/EOFError/... on corrupt data
        raise CheckpointError(
            f"{path!r}: model.pt could not be read as a torch state_dict: {exc}"
        ) from exc
    if not isinstance(state_dict, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()
    ):
        raise CheckpointError(
            f"{path!r}: model.pt holds a {type(state_dict).__name__}, expected a dict of tensors"
        )
    return args, metadata, dict(state_dict)


def _read_members(path: str) -> dict[str, bytes]:
    # Tar first, as PhysicsNeMo does: a tar whose last member is a zip (model.pt) can look like a zip.
    if tarfile.is_tarfile(path):
        out: dict[str, bytes] = {}
        try:
            with tarfile.open(path, "r") as archive:
                for member in archive.getmembers():
                    name = os.path.basename(member.name)
                    if member.isfile() and name in ("args.json", "metadata.json", "model.pt"):
                        handle = archive.extractfile(member)
                        if handle is not None:
                            out[name] = handle.read()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise CheckpointError(f"{path!r} is a corrupt tar archive: {exc}") from exc
        return out
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path, "r") as archive:
                names = {os.path.basename(n): n for n in archive.namelist()}
                return {
                    name: archive.read(names[name])
                    for name in ("args.json", "metadata.json", "model.pt")
                    if name in names
                }
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:
            raise CheckpointError(f"{path!r} is a corrupt zip archive: {exc}") from exc
    raise CheckpointError(
        f"{path!r} is neither a zip nor a tar archive; expected a PhysicsNeMo .mdlus checkpoint"
    )


def _parse_json(path: str, name: str, data: bytes) -> dict[str, Any]:
    if len(data) > _MAX_JSON_BYTES:
        raise CheckpointError(
            f"{path!r}: {name} is {len(data)} bytes, more than a checkpoint's arguments"
        )
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path!r}: {name} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise CheckpointError(
            f"{path!r}: {name} holds a {type(value).__name__}, expected a JSON object"
        )
    return value


def rename_legacy_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Bring an old PhysicsNeMo/Modulus state_dict to current names.

    * ``<block>.norm2.*``, ``<block>.qkv.*``, ``<block>.proj.*`` on a U-Net block
      (``...enc.<R>x<R>_<name>.`` or ``...dec.<R>x<R>_<name>.``) become
      ``<block>.attn.norm.*``, ``<block>.attn.qkv.*``, ``<block>.attn.proj.*``
      (PhysicsNeMo's ``UNetBlock._migrate_attention_module``);
    * ``device_buffer`` entries (a buffer of PhysicsNeMo's ``Module`` base class that
      older releases saved) are dropped.

    Parameters
    ----------
    state_dict : mapping of str to Tensor
        Possibly legacy state_dict.

    Returns
    -------
    dict of str to Tensor
        The renamed state_dict, order preserved.

    Raises
    ------
    ValueError
        If a legacy key and its current name are both present.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[-1] == "device_buffer":
            continue
        new_key = key
        if len(parts) >= 4 and parts[-4] in ("enc", "dec"):
            tail = ".".join(parts[-2:])
            if tail in _LEGACY_ATTENTION_KEYS:
                new_key = ".".join([*parts[:-2], _LEGACY_ATTENTION_KEYS[tail]])
                if new_key in state_dict:
                    raise ValueError(
                        f"checkpoint has both the legacy key {key!r} and its new name {new_key!r}"
                    )
        out[new_key] = value
    return out


def _constructor_args(name: str, args: Mapping[str, Any], use_apex_gn: bool) -> dict[str, Any]:
    kwargs = dict(args)
    if name in ("UNet", "CorrDiffRegressionUNet"):
        # Version 0.1.0 regression checkpoints carry unused arguments (PhysicsNeMo drops them too).
        for unused in ("img_channels", "sigma_min", "sigma_max", "sigma_data"):
            kwargs.pop(unused, None)
    for key in ("sigma_min", "sigma_max", "sigma_data"):
        if isinstance(kwargs.get(key), str):  # "inf"/"Infinity" from hand-written JSON
            kwargs[key] = float(kwargs[key])
    if name != "DiT":  # the U-Nets' group norms; a DiT has none
        kwargs["use_apex_gn"] = use_apex_gn
    return kwargs


def load_physicsnemo(
    path: str | os.PathLike[str],
    *,
    map_location: str | torch.device = "cpu",
    use_apex_gn: bool = False,
) -> torch.nn.Module:
    """Load a PhysicsNeMo CorrDiff checkpoint (``.mdlus``) as an xcorrdiff module.

    Parameters
    ----------
    path : str or path-like
        ``.mdlus`` file, zip or legacy tar, as written by PhysicsNeMo's ``Module.save``
        (e.g. ``UNet.0.1000.mdlus``, ``EDMPrecondSR.0.2000.mdlus``).
    map_location : str or torch.device, default "cpu"
        Device of the returned module.
    use_apex_gn : bool, default False
        Overrides the checkpoint's ``use_apex_gn`` (as PhysicsNeMo's ``override_args``
        allows): True uses NVIDIA apex's fused group norm when apex and CUDA exist.

    Returns
    -------
    torch.nn.Module
        One of :class:`~xcorrdiff.nn.UNet`, :class:`~xcorrdiff.nn.EDMPrecondSuperResolution`,
        :class:`~xcorrdiff.nn.EDMPrecondSR`, :class:`~xcorrdiff.nn.SongUNet`,
        :class:`~xcorrdiff.nn.SongUNetPosEmbd`, in eval mode, weights loaded with
        ``strict=True`` after the legacy renames of :func:`rename_legacy_keys`.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    CheckpointError
        (a ``ValueError``) if the file is not a readable checkpoint, names a class
        xcorrdiff does not support (the message lists the supported ones), has arguments
        our classes do not take, or weights that do not fit.

    Examples
    --------
    >>> net = load_physicsnemo("EDMPrecondSR.0.8000000.mdlus")  # doctest: +SKIP
    >>> denoised = net(x, img_lr, sigma)                        # doctest: +SKIP
    """
    args, _metadata, state_dict = read_mdlus(path)
    name = args.get("__name__")
    if not isinstance(name, str) or not isinstance(args.get("__args__"), dict):
        raise CheckpointError(
            f"{os.fspath(path)!r}: args.json must hold '__name__' (str) and '__args__' (object), "
            f"got keys {sorted(args)}"
        )
    if name not in SUPPORTED_CLASSES:
        raise CheckpointError(
            f"{os.fspath(path)!r} holds a {name!r} (module {args.get('__module__')!r}), which is not a "
            f"CorrDiff network xcorrdiff can import; supported classes: {', '.join(SUPPORTED_CLASSES)}"
        )
    if any(k.startswith("__") for k in args if k not in ("__name__", "__module__", "__args__")):
        raise CheckpointError(
            f"{os.fspath(path)!r}: nested PhysicsNeMo modules are not supported by CorrDiff import"
        )
    kwargs = _constructor_args(name, args["__args__"], use_apex_gn)
    try:
        module = build_network(name, kwargs, where=f"{os.fspath(path)!r} (args.json)")
    except ValueError as exc:
        raise CheckpointError(str(exc)) from exc
    state_dict = rename_legacy_keys(state_dict)
    # Old checkpoints saved the positional noise-embedding frequencies as non-persistent.
    for prefix, sub in module.named_modules():
        if isinstance(sub, PositionalEmbedding) and f"{prefix}.freqs" not in state_dict:
            state_dict[f"{prefix}.freqs"] = sub.freqs
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{os.fspath(path)!r}: the weights do not fit {name}: {exc}") from exc
    return module.to(map_location).eval()


def save_physicsnemo(net: torch.nn.Module, path: str | os.PathLike[str]) -> None:
    """Write ``net`` as a PhysicsNeMo ``.mdlus`` checkpoint (zip), atomically.

    The archive holds ``args.json`` (class name, PhysicsNeMo 2.2.2 module, constructor
    arguments), ``metadata.json`` and ``model.pt`` (the state dict, ``torch.save``), as
    PhysicsNeMo's ``Module.save`` writes them; :func:`load_physicsnemo` reads it back with
    the same weights, bit for bit.

    Raises
    ------
    TypeError
        ``net`` is not one of the :data:`SUPPORTED_CLASSES` or has no constructor arguments.
    """
    name = type(net).__name__
    config = getattr(net, "config", None)
    if SUPPORTED_CLASSES.get(name) is not type(net) or not isinstance(config, Mapping):
        raise TypeError(
            f"network of class {name} cannot be written as a PhysicsNeMo checkpoint; expected "
            f"one of {sorted(SUPPORTED_CLASSES)} with its constructor arguments in .config"
        )
    args = {"__name__": name, "__module__": PHYSICSNEMO_MODULES[name], "__args__": dict(config)}
    weights = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, weights)
    target = os.fspath(path)
    tmp = f"{target}.tmp-{os.getpid()}"
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr("model.pt", weights.getvalue())
            archive.writestr("args.json", json.dumps(args))
            metadata = {
                "physicsnemo_version": "2.2.2",
                "mdlus_file_version": CHECKPOINT_VERSIONS[name],
            }
            archive.writestr("metadata.json", json.dumps(metadata))
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
