"""The xarray data layer: units, regridding, normalization, tensor conversion, batching.

``import xcorrdiff.data`` does not import torch; the torch-backed batching names load lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

from xcorrdiff.data.convert import array_to_dataset, dataset_to_array, to_tensor
from xcorrdiff.data.fill import fill_nearest
from xcorrdiff.data.normalize import Normalizer, VariableStats
from xcorrdiff.data.regrid import RegridBackend, RegridMethod, latlon_names, regrid
from xcorrdiff.data.units import convert_units, parse_units, unit_conversion

_LAZY = {
    "PairedBatchStream": "xcorrdiff.data.batching",
    "extract_sample_patches": "xcorrdiff.data.batching",
    "split_times": "xcorrdiff.data.batching",
}

__all__ = [
    "Normalizer",
    "PairedBatchStream",
    "RegridBackend",
    "RegridMethod",
    "VariableStats",
    "array_to_dataset",
    "convert_units",
    "dataset_to_array",
    "extract_sample_patches",
    "fill_nearest",
    "latlon_names",
    "parse_units",
    "regrid",
    "split_times",
    "to_tensor",
    "unit_conversion",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'xcorrdiff.data' has no attribute {name!r}")
