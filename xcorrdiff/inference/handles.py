"""Model references for the inference pipeline, and the per-process model cache.

A :class:`ModelRef` is what enters the dask graph (once, as a single key): the directory of
a saved model plus the SHA-256 of its files, or an in-memory model. :func:`model_on` turns
it into a model on a device, loading or moving it once per process and caching it by hash,
so each dask worker loads a model once however many tasks use it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from xcorrdiff._model_dir import state_digest
from xcorrdiff.model import DEMO_MODEL_DIR, CorrDiffModel, load_model
from xcorrdiff.options import OPTIONS

__all__ = ["ModelRef", "cache_info", "get_model", "model_on", "resolve_model", "worker_device"]

_CACHE_SIZE = 2


def _file_digest(root: Path) -> str:
    """SHA-256 of a model directory's config and weights (names and bytes).

    Every weight byte counts: the per-process model cache is keyed by this digest, so a
    damaged copy of a model never gets the intact copy's cached networks.
    """
    digest = hashlib.sha256()
    names = ["config.json", *sorted(p.name for p in root.glob("*.safetensors"))]
    for name in names:
        digest.update(name.encode())
        with open(root / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _model_digest(model: CorrDiffModel) -> str:
    """SHA-256 of an in-memory model: its configuration and its networks' weights."""
    digest = hashlib.sha256()
    digest.update(json.dumps(model.config_dict(), sort_keys=True, default=str).encode())
    for net in model.networks().values():
        digest.update(state_digest(net).encode())
    return digest.hexdigest()


class ModelRef:
    """A picklable reference to a model: a saved directory plus its content hash, or the
    in-memory model itself (pickled with it when shipped to another process)."""

    def __init__(self, *, digest: str, path: str | None, model: CorrDiffModel | None) -> None:
        self.digest = digest
        self.path = path
        self.model = model

    @property
    def model_id(self) -> str:
        return self.path if self.path is not None else "in-memory CorrDiffModel"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.path is not None:
            state["model"] = None  # other processes load it from the directory
        return state

    def __repr__(self) -> str:
        return f"ModelRef({self.model_id!r}, digest={self.digest[:12]})"


_CACHE: OrderedDict[tuple[str, str], CorrDiffModel] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_LOADS = {"loads": 0}


def cache_info() -> dict[str, int]:
    """Model loads from disk in this process, and models held in its cache.

    Returns
    -------
    dict
        ``{"loads": int, "cached": int}``.
    """
    with _CACHE_LOCK:
        return {"loads": _LOADS["loads"], "cached": len(_CACHE)}


def _on_device(net: torch.nn.Module, device: torch.device) -> bool:
    param = next(net.parameters(), None)
    return param is None or param.device == device


def _dask_worker_name() -> object:
    try:
        from distributed import get_worker
    except ImportError:
        return None
    try:
        return get_worker().name
    except ValueError:  # not inside a dask worker
        return None


def worker_device(
    requested: str,
    *,
    environ: Mapping[str, str] | None = None,
    worker_name: object = None,
    device_count: int | None = None,
) -> torch.device:
    """The device this process should run on: one GPU per worker when ``requested`` is "cuda".

    An explicit device (``"cpu"``, ``"cuda:1"``) is returned as is. A bare ``"cuda"`` is
    resolved in the process that runs the task, so each worker of a cluster pins its own
    GPU, in this order:

    1. ``LOCAL_RANK`` (or ``SLURM_LOCALID``) set: ``cuda:(rank % device_count)``;
    2. ``CUDA_VISIBLE_DEVICES`` set: ``cuda:0``, the first GPU this process sees (dask-cuda's
       ``LocalCUDACluster`` lists each worker's own GPU first; SLURM's
       ``--gpus-per-task=1`` leaves one);
    3. inside a dask worker named by an integer (``LocalCluster`` names them 0, 1, ...):
       ``cuda:(name % device_count)``;
    4. otherwise ``cuda:0``.

    Parameters
    ----------
    requested : str
        The device of the request: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    environ : mapping, optional
        Environment to read; default :data:`os.environ`.
    worker_name : object, optional
        Name of the dask worker; default: looked up with :func:`distributed.get_worker`.
    device_count : int, optional
        Visible GPUs; default :func:`torch.cuda.device_count`.

    Returns
    -------
    torch.device
    """
    device = torch.device(requested)
    if device.type != "cuda" or device.index is not None:
        return device
    env = os.environ if environ is None else environ
    count = torch.cuda.device_count() if device_count is None else device_count
    count = max(int(count), 1)
    rank = env.get("LOCAL_RANK") or env.get("SLURM_LOCALID")
    if rank is not None and rank.strip().isdigit():
        return torch.device("cuda", int(rank) % count)
    if env.get("CUDA_VISIBLE_DEVICES", "").strip():
        return torch.device("cuda", 0)
    name = _dask_worker_name() if worker_name is None else worker_name
    if isinstance(name, int) and not isinstance(name, bool):
        return torch.device("cuda", name % count)
    if isinstance(name, str) and name.isdigit():
        return torch.device("cuda", int(name) % count)
    return torch.device("cuda", 0)


def model_on(ref: ModelRef, device: torch.device) -> CorrDiffModel:
    """The referenced model on ``device``, loaded or moved once per process."""
    key = (ref.digest, str(device))
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        if ref.model is None:
            if ref.path is None:
                raise RuntimeError("model reference holds neither a model nor a path")
            model = load_model(ref.path, device=device)
            _LOADS["loads"] += 1
        elif all(_on_device(net, device) for net in ref.model.networks().values()):
            model = ref.model
        else:
            model = copy.copy(ref.model)  # the caller's model stays where it is
            for role, net in ref.model.networks().items():
                setattr(model, role, copy.deepcopy(net).to(device))
        _CACHE[key] = model
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        return model


def resolve_model(model: CorrDiffModel | str | os.PathLike[str] | ModelRef | None) -> ModelRef:
    """A reference to ``model``, or to ``xcorrdiff.set_options(model=...)`` when ``None``.

    Parameters
    ----------
    model : CorrDiffModel, path-like, ModelRef or None
        A model, or the directory of a saved one (:meth:`CorrDiffModel.save`). A
        :class:`ModelRef` is returned as it is, so a caller that resolved a model (hashing
        its files once) can hand the reference on.

    Raises
    ------
    ValueError
        No model given and none set in the options.
    FileNotFoundError
        A path that is not a saved model directory.
    TypeError
        Anything else.
    """
    if isinstance(model, ModelRef):
        return model
    if model is None:
        model = OPTIONS["model"]
    if model is None:
        raise ValueError(
            "no model: pass model= (a CorrDiffModel or the directory of a saved one, e.g. "
            "lr.corrdiff.downscale(model=xcorrdiff.load_model('model_dir'))), or set a "
            "default with xcorrdiff.set_options(model='model_dir')"
        )
    if isinstance(model, CorrDiffModel):
        return ModelRef(digest=_model_digest(model), path=None, model=model)
    if isinstance(model, str) and model == "demo":
        model = DEMO_MODEL_DIR
    if isinstance(model, (str, os.PathLike)):
        root = Path(model).expanduser().resolve()
        if not (root / "config.json").is_file():
            raise FileNotFoundError(
                f"model={os.fspath(model)!r} is not a saved CorrDiff model directory (no "
                "config.json); expected a directory written by CorrDiffModel.save"
            )
        return ModelRef(digest=_file_digest(root), path=os.fspath(root), model=None)
    raise TypeError(
        f"model={model!r} is invalid; expected a CorrDiffModel or the path of a saved model "
        "directory"
    )


def get_model(
    model: CorrDiffModel | str | os.PathLike[str] | ModelRef | None = None,
    *,
    device: str | torch.device = "cpu",
) -> CorrDiffModel:
    """The model :func:`downscale` would use, loaded once per process and cached.

    Parameters
    ----------
    model : CorrDiffModel, path-like or None
        As for :func:`resolve_model` (``None``: the model of :func:`xcorrdiff.set_options`).
    device : str or torch.device, default "cpu"
        Where its networks should be.

    Returns
    -------
    CorrDiffModel
    """
    return model_on(resolve_model(model), torch.device(device))
