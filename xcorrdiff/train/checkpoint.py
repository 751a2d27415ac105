"""Checkpoint files without pickle: tensors in safetensors, everything else in JSON.

A checkpoint is one ``.safetensors`` file. Its tensors hold the network, EMA and optimizer
state and the RNG states; its header metadata holds one JSON document (``"xcorrdiff"``) with
the rest: counters, the optimizer's hyperparameters, numpy and Python RNG states, the data
position and the fingerprint of the model being trained. Nested Python structures are
encoded with small tags so that tuples, non-string dict keys, numpy arrays and tensors come
back exactly as they were (``decode(encode(x)) == x``).

Files are written to a temporary name in the target directory and renamed with
:func:`os.replace`, so a crash never leaves a half-written checkpoint behind (an orphaned
temporary file is removed by the next run, :func:`remove_orphans`). The metadata also holds
the SHA-256 of the document and of every tensor, checked on reading: a damaged checkpoint is
an error naming the file, never a silent resume from other numbers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from xcorrdiff._files import new_file_mode, write_text_atomic
from xcorrdiff._model_dir import hash_tensors

__all__ = [
    "JsonlLog",
    "capture_rng",
    "decode",
    "describe_difference",
    "encode",
    "read_checkpoint",
    "remove_orphans",
    "restore_rng",
    "write_checkpoint",
]

_META_KEY = "xcorrdiff"
_DIGEST_KEY = "xcorrdiff_sha256"


def encode(obj: Any, tensors: dict[str, torch.Tensor], prefix: str) -> Any:
    """JSON-able form of ``obj``; tensors and arrays are moved into ``tensors``.

    Parameters
    ----------
    obj : any
        Nested dicts, lists, tuples, str, int, float, bool, None, numpy arrays and scalars,
        torch tensors.
    tensors : dict
        Receives the tensors, keyed by ``prefix`` plus their path in ``obj``.
    prefix : str
        Key prefix, e.g. ``"optimizer"``.

    Returns
    -------
    any
        A JSON-serialisable structure, decoded by :func:`decode`.
    """
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": prefix}
    if isinstance(obj, np.ndarray):
        tensors[prefix] = torch.from_numpy(np.ascontiguousarray(obj).copy())
        return {"__ndarray__": prefix}
    if isinstance(obj, np.generic):
        return encode(obj.item(), tensors, prefix)
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and not any(k.startswith("__") for k in obj):
            return {k: encode(v, tensors, f"{prefix}.{k}") for k, v in obj.items()}
        return {
            "__items__": [
                [encode(k, tensors, f"{prefix}.k{i}"), encode(v, tensors, f"{prefix}.{i}")]
                for i, (k, v) in enumerate(obj.items())
            ]
        }
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(
        f"cannot store {type(obj).__name__} at {prefix!r} in a checkpoint; expected tensors, "
        "arrays, numbers, strings and nested dicts/lists/tuples of them"
    )


def decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`encode`."""
    if isinstance(obj, list):
        return [decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__ndarray__" in obj:
            return tensors[obj["__ndarray__"]].numpy()
        if "__tuple__" in obj:
            return tuple(decode(v, tensors) for v in obj["__tuple__"])
        if "__items__" in obj:
            return {decode(k, tensors): decode(v, tensors) for k, v in obj["__items__"]}
        return {k: decode(v, tensors) for k, v in obj.items()}
    return obj


Generators = Mapping[str, "torch.Generator | np.random.Generator"]


def _generator_state(g: torch.Generator | np.random.Generator) -> Any:
    if isinstance(g, np.random.Generator):
        return g.bit_generator.state
    return g.get_state()


def capture_rng(generators: Generators | None = None) -> dict[str, Any]:
    """Every random state that training consumes: torch (CPU, CUDA), numpy, Python, generators."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        # The global numpy state is saved because user code and libraries may draw from it.
        "numpy": np.random.get_state(legacy=False),  # noqa: NPY002
        "python": random.getstate(),
        "generators": {name: _generator_state(g) for name, g in (generators or {}).items()},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], generators: Generators | None = None) -> None:
    """Restore what :func:`capture_rng` captured (generators are restored in place)."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    saved = state.get("generators", {})
    for name, g in (generators or {}).items():
        if name not in saved:
            raise ValueError(
                f"the checkpoint has no state for random generator {name!r}; it holds "
                f"{sorted(saved)}"
            )
        if isinstance(g, np.random.Generator):
            g.bit_generator.state = saved[name]
        else:
            g.set_state(saved[name])


def _digest(document: str, tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of the JSON document and of every tensor (name, dtype, shape, bytes)."""
    return str(hash_tensors(hashlib.sha256(document.encode()), tensors).hexdigest())


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def remove_orphans(path: str | os.PathLike[str]) -> list[Path]:
    """Remove temporary files a killed :func:`write_checkpoint` left beside ``path``.

    Only files named as :func:`write_checkpoint` names its temporaries (``.<name>.*.tmp``)
    are removed. Returns the removed paths.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    removed = []
    for orphan in path.parent.glob(f"{_temporary_prefix(path)}*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            orphan.unlink()
            removed.append(orphan)
    return removed


def write_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write ``state`` (see :func:`encode`) atomically to a safetensors file.

    Parameters
    ----------
    path : path-like
        Target file; its directory is created if needed.
    state : dict
        Nested checkpoint state.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    document = json.dumps(encode(state, tensors, "s"), allow_nan=True)
    metadata = {_META_KEY: document, _DIGEST_KEY: _digest(document, tensors)}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temporary_prefix(path), suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, new_file_mode())  # mkstemp made it 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def _damaged(path: str | os.PathLike[str], reason: str) -> ValueError:
    return ValueError(
        f"training checkpoint {os.fspath(path)!r} is damaged ({reason}); delete it to start the "
        "stage afresh, or restore it from a backup"
    )


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a file written by :func:`write_checkpoint` (no pickle involved).

    Raises
    ------
    ValueError
        The file is not a safetensors file, not an xcorrdiff checkpoint, or its content does
        not match its recorded SHA-256 (truncated, altered).
    """
    tensors: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            for key in f.keys():  # noqa: SIM118  (safe_open has no __iter__)
                tensors[key] = f.get_tensor(key)
    except Exception as exc:  # safetensors raises its own error type on damaged files
        raise _damaged(path, f"not a readable safetensors file: {exc}") from None
    if _META_KEY not in metadata:
        raise ValueError(
            f"{os.fspath(path)!r} is not an xcorrdiff training checkpoint (no {_META_KEY!r} "
            "metadata); point checkpoint_dir at a directory of xcorrdiff checkpoints"
        )
    document = metadata[_META_KEY]
    recorded = metadata.get(_DIGEST_KEY)
    if recorded is not None and recorded != _digest(document, tensors):
        raise _damaged(path, "its content differs from its recorded SHA-256")
    try:
        return dict(decode(json.loads(document), tensors))
    except (ValueError, KeyError, TypeError) as exc:
        raise _damaged(path, f"its metadata cannot be decoded: {exc}") from None


# --- the run's log and the comparison of fingerprints ------------------------------


class JsonlLog:
    """Append-only JSON-lines log (one record a line, flushed at once)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: Mapping[str, Any]) -> None:
        if self.path is None:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, allow_nan=True) + "\n")

    def rewind(self, stage: str, samples: int) -> int:
        """Drop ``stage``'s records past ``samples``: the steps an interrupted run did after
        its last checkpoint, which the resumed run does again. Returns how many were dropped.

        The log is rewritten atomically; a partial last line (a kill mid-write) goes too.
        """
        if self.path is None or not self.path.is_file():
            return 0
        kept, dropped = [], 0
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                dropped += 1
                continue
            if record.get("stage") == stage and record.get("samples", 0) > samples:
                dropped += 1
            else:
                kept.append(line + "\n")
        if dropped:
            write_text_atomic(self.path, "".join(kept))
        return dropped


def _differences(found: Any, expected: Any, path: str = "") -> list[str]:
    """The leaves where two nested JSON values differ, as ``path: a != b`` lines."""
    if isinstance(found, Mapping) and isinstance(expected, Mapping):
        out = []
        for key in sorted(set(found) | set(expected), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in found:
                out.append(f"{where}: absent in the checkpoint, {expected[key]!r} in this run")
            elif key not in expected:
                out.append(f"{where}: {found[key]!r} in the checkpoint, absent in this run")
            else:
                out.extend(_differences(found[key], expected[key], where))
        return out
    if found == expected:
        return []
    short = [repr(v) if len(repr(v)) <= 80 else f"{repr(v)[:77]}..." for v in (found, expected)]
    return [f"{path or 'value'}: checkpoint has {short[0]}, this run has {short[1]}"]


def describe_difference(found: Mapping[str, Any], expected: Mapping[str, Any]) -> str:
    diffs = _differences(found, expected)
    more = f"; and {len(diffs) - 6} more" if len(diffs) > 6 else ""
    return "; ".join(diffs[:6]) + more
