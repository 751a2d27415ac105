"""A saved model loads only when intact: checksums, names inside the folder, sane networks.

Each test damages one file of a saved model the way real disks and hands do (a flipped
bit, a truncated copy, garbled JSON, an edited config) and expects an error naming the file
and the fix, never a model that loads with other numbers.
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from test_model import _model

import xcorrdiff
from xcorrdiff.model import load_model
from xcorrdiff.nn import CheckpointError, load_physicsnemo
from xcorrdiff.nn.registry import build_network


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _model().save(tmp_path_factory.mktemp("files") / "model")


@pytest.fixture
def copy(saved: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(saved, tmp_path / "model"))


def _edit_config(root: Path, edit: Any) -> None:
    config = json.loads((root / "config.json").read_text())
    edit(config)
    (root / "config.json").write_text(json.dumps(config))


def test_saved_config_records_every_file(saved: Path) -> None:
    config = json.loads((saved / "config.json").read_text())
    assert config["format_version"] == 2
    files = sorted(p.name for p in saved.iterdir() if p.name != "config.json")
    assert sorted(config["files"]) == files
    assert all(len(r["sha256"]) == 64 and r["bytes"] > 0 for r in config["files"].values())


def test_the_packaged_demo_model_is_verified() -> None:
    config = json.loads((xcorrdiff.model.DEMO_MODEL_DIR / "config.json").read_text())
    assert set(config["files"]) >= {"regression.safetensors", "diffusion.safetensors"}
    load_model("demo")


def test_a_flipped_bit_in_the_weights_is_refused(copy: Path) -> None:
    path = copy / "diffusion.safetensors"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01  # one bit of one weight
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"diffusion.safetensors is damaged: its SHA-256 differs"):
        load_model(copy)


def test_a_truncated_file_is_refused(copy: Path) -> None:
    path = copy / "regression.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"regression.safetensors is damaged: its size differs"):
        load_model(copy)


def test_a_missing_file_is_named(copy: Path) -> None:
    (copy / "grid_hr.nc").unlink()
    with pytest.raises(FileNotFoundError, match=r"grid_hr.nc is missing; .*config.json lists it"):
        load_model(copy)


def test_garbled_config_names_the_file(copy: Path) -> None:
    (copy / "config.json").write_text('{"format": "xcorrdiff-model", "format_version": 2,')
    with pytest.raises(ValueError, match=r"config.json is not valid JSON .*restore it"):
        load_model(copy)


def test_a_config_missing_an_entry_names_it(copy: Path) -> None:
    _edit_config(copy, lambda c: c.pop("normalization"))
    with pytest.raises(ValueError, match=r"config.json lacks or garbles the entry 'normalization'"):
        load_model(copy)


@pytest.mark.parametrize("name", ["../grid_hr.nc", "/etc/passwd", "sub/grid_hr.nc", ""])
def test_file_names_must_stay_inside_the_model(copy: Path, name: str) -> None:
    _edit_config(copy, lambda c: c["grid"].update(file=name))
    with pytest.raises(ValueError, match=r"is not a plain file name inside the directory"):
        load_model(copy)


def test_a_link_out_of_the_model_is_refused(copy: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.nc"
    shutil.copy(copy / "grid_hr.nc", outside)
    (copy / "grid_hr.nc").unlink()
    (copy / "grid_hr.nc").symlink_to(outside)
    with pytest.raises(ValueError, match=r"'grid_hr.nc' links outside the directory"):
        load_model(copy)


def test_a_file_the_table_does_not_record_is_refused(copy: Path) -> None:
    shutil.copy(copy / "grid_hr.nc", copy / "other.nc")
    _edit_config(copy, lambda c: c["grid"].update(file="other.nc"))
    with pytest.raises(ValueError, match=r"names 'other.nc' but its 'files' table has no checksum"):
        load_model(copy)


def test_a_crafted_network_size_is_refused_before_allocation(copy: Path) -> None:
    def huge(config: dict[str, Any]) -> None:
        config["networks"]["diffusion"]["kwargs"]["model_channels"] = 4096
        config["networks"]["diffusion"]["kwargs"]["channel_mult"] = [64, 64, 64]

    _edit_config(copy, huge)
    with pytest.raises(ValueError, match=r"networks.diffusion.*would take .* TiB, more than"):
        load_model(copy)
    _edit_config(copy, lambda c: c["networks"]["diffusion"]["kwargs"].update(model_channels=10**6))
    with pytest.raises(ValueError, match=r"model_channels=1000000 is invalid; expected an integer"):
        load_model(copy)


def test_a_network_that_does_not_match_its_weights_is_refused(copy: Path) -> None:
    _edit_config(copy, lambda c: c["networks"]["regression"]["kwargs"].update(model_channels=16))
    with pytest.raises(ValueError, match=r"does not match the tensors of regression.safetensors"):
        load_model(copy)


def test_unreadable_weights_in_an_unverified_model_name_the_file(copy: Path) -> None:
    _edit_config(copy, lambda c: c.update(format_version=1))
    (copy / "diffusion.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    with (
        pytest.warns(UserWarning, match=r"format-1 model without checksums"),
        pytest.raises(
            ValueError, match=r"diffusion.safetensors is not a readable safetensors file"
        ),
    ):
        load_model(copy)


def test_a_format_1_model_loads_with_a_warning(copy: Path) -> None:
    _edit_config(copy, lambda c: (c.pop("files"), c.update(format_version=1)))
    with pytest.warns(UserWarning, match=r"not verified. Save it again"):
        model = load_model(copy)
    assert model.diffusion is not None


def test_huge_positional_grid_is_refused() -> None:
    kwargs = {"img_resolution": [32768, 32768], "img_in_channels": 2, "img_out_channels": 1,
              "gridtype": "sinusoidal", "N_grid_channels": 1024, "model_channels": 8,
              "channel_mult": [1], "model_type": "SongUNetPosEmbd"}  # fmt: skip
    with pytest.raises(ValueError, match=r"positional grid alone would take 12 TiB"):
        build_network("UNet", kwargs, where="config.json")


def test_crafted_physicsnemo_arguments_are_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(1)}, buffer)
    args = {"__name__": "SongUNet", "__module__": "x", "__args__": {
        "img_resolution": 16, "in_channels": 2, "out_channels": 1, "model_channels": 10**7}}  # fmt: skip
    path = tmp_path / "big.mdlus"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("args.json", json.dumps(args))
        z.writestr("model.pt", buffer.getvalue())
    with pytest.raises(CheckpointError, match=r"model_channels=10000000 is invalid"):
        load_physicsnemo(path)


def test_save_overwrite_replaces_only_a_model_directory(tmp_path: Path) -> None:
    model = _model()
    foreign = tmp_path / "results"
    foreign.mkdir()
    (foreign / "paper.pdf").write_text("final")
    with pytest.raises(
        FileExistsError, match=r"holds \['paper.pdf'\], which xcorrdiff did not write"
    ):
        model.save(foreign, overwrite=True)  # before: renamed aside and deleted
    assert (foreign / "paper.pdf").read_text() == "final"
    saved = model.save(tmp_path / "model")
    (saved / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"holds \['notes.txt'\]"):
        model.save(saved, overwrite=True)
    (saved / "notes.txt").unlink()
    model.save(saved, overwrite=True)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(FileExistsError, match=r"exists and is not a folder"):
        model.save(a_file, overwrite=True)
