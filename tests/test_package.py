"""Package-level contracts: layering, the accessor, lazy submodules."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import xarray as xr

import xcorrdiff


def _run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return out.stdout.strip()


def test_accessor_registered() -> None:
    ds = xr.Dataset({"a": ("x", [1.0, 2.0])})
    assert ds.corrdiff._obj is ds
    da = ds["a"]
    assert da.corrdiff._obj is da


def test_version() -> None:
    assert isinstance(xcorrdiff.__version__, str)


def test_import_xcorrdiff_does_not_import_torch() -> None:
    assert _run("import sys, xcorrdiff; print('torch' in sys.modules)") == "False"


def test_verify_imports_without_torch() -> None:
    assert _run("import sys, xcorrdiff.verify; print('torch' in sys.modules)") == "False"


# Layers (DESIGN.md): imports only go downward. Forbidden imports, by package part.
_THIRD_PARTY_FORBIDDEN = {
    "nn": {"xarray", "dask", "pint", "pint_xarray", "cf_xarray", "zarr", "xarray_regrid"},
    "diffusion": {"xarray", "dask", "pint", "pint_xarray", "cf_xarray", "zarr", "xarray_regrid"},
    "verify": {"torch"},
}
_UPPER = {"accessor", "cli", "model", "train", "downscale"}
_INTERNAL_FORBIDDEN = {
    "nn": {"diffusion", "data", "verify", "tutorial", "plot", *_UPPER},
    "diffusion": {"data", "verify", "tutorial", "plot", *_UPPER},
    "data": _UPPER,
    "verify": {"nn", "diffusion", *_UPPER},
    "tutorial": _UPPER,
    "plot": _UPPER,
}


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if node.module == "xcorrdiff":
                names.update(f"xcorrdiff.{alias.name}" for alias in node.names)
    return names


def test_layers_import_only_downward() -> None:
    root = pathlib.Path(xcorrdiff.__file__).parent
    problems = []
    for path in sorted(root.rglob("*.py")):
        part = path.relative_to(root).parts[0].removesuffix(".py")
        for name in _imports(path):
            top = name.split(".")[0]
            if top in _THIRD_PARTY_FORBIDDEN.get(part, set()):
                problems.append(f"{path.relative_to(root)} imports {name}")
            if top == "xcorrdiff" and "." in name:
                sub = name.split(".")[1]
                if sub in _INTERNAL_FORBIDDEN.get(part, set()):
                    problems.append(f"{path.relative_to(root)} imports {name}")
    assert not problems, "layering violations:\n" + "\n".join(problems)
