"""xcorrdiff.nn against PhysicsNeMo 2.2.2: checkpoints written by PhysicsNeMo load into our
modules and reproduce PhysicsNeMo's outputs (fixtures from tests/fixtures/make_nn_fixtures.py).

``pytest tests/test_nn_physicsnemo.py -s`` prints the max relative error of every case.
"""

from __future__ import annotations

import io
import json
import math
import pathlib
import pickle
import tarfile
import zipfile

import numpy as np
import pytest
import torch

from xcorrdiff.nn import (
    CheckpointError,
    CorrDiffRegressionUNet,
    EDMPrecondSR,
    EDMPrecondSuperResolution,
    SongUNet,
    SongUNetPosEmbd,
    UNet,
    edm_scalings,
    load_physicsnemo,
)
from xcorrdiff.nn.physicsnemo import read_mdlus, rename_legacy_keys

pytestmark = pytest.mark.numerics

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "physicsnemo_nn"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
CASES = MANIFEST["cases"]
RTOL = 1e-5


def max_relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """``max |ours - reference| / max |reference|``."""
    assert ours.shape == reference.shape
    return float((ours - reference).abs().max() / reference.abs().max())


def _arrays(case: dict) -> dict[str, torch.Tensor]:
    with np.load(FIXTURES / case["npz"], allow_pickle=False) as data:
        return {k: torch.from_numpy(data[k]) for k in data.files}


def _run(net: torch.nn.Module, call: str, a: dict[str, torch.Tensor], suffix: str = "", **kw):  # type: ignore[no-untyped-def]
    if "lead_time_label" in a:  # one label per sample, shared by its patches
        kw["lead_time_label"] = a["lead_time_label"]
    if call == "songunet":
        labels = {k: a[k] for k in ("class_labels", "augment_labels") if k in a}
        return net(a["x"], a["noise_labels"], **labels, **kw)
    if call == "regression":
        return net(a[f"x{suffix}"], a[f"img_lr{suffix}"], **kw)
    return net(a[f"x{suffix}"], a[f"img_lr{suffix}"], a[f"sigma{suffix}"], **kw)


@pytest.mark.parametrize("name", sorted(CASES))
def test_reproduces_physicsnemo_outputs(name: str) -> None:
    case = CASES[name]
    net = load_physicsnemo(FIXTURES / case["mdlus"])
    expected_class = {"CorrDiffRegressionUNet": UNet}.get(case["class"])
    assert type(net).__name__ == (expected_class.__name__ if expected_class else case["class"])
    assert not net.training
    a = _arrays(case)
    with torch.no_grad():
        out = _run(net, case["call"], a)
    err = max_relative_error(out, a["out"])
    print(f"\nphysicsnemo-equality case={name} class={case['class']} max_rel_err={err:.2e}")
    assert err <= RTOL
    if case["call"] == "edm":
        # The network part alone (D - c_skip x), so a small c_out cannot hide a mismatch.
        c_skip = edm_scalings(a["sigma"].reshape(-1, 1, 1, 1), net.sigma_data)[0]
        err_f = max_relative_error(out - c_skip * a["x"], a["out"] - c_skip * a["x"])
        print(f"physicsnemo-equality case={name} (c_out*F part) max_rel_err={err_f:.2e}")
        assert err_f <= RTOL


@pytest.mark.parametrize(
    "name",
    [n for n in sorted(CASES) if "global_index" in np.load(FIXTURES / CASES[n]["npz"]).files],
)
def test_reproduces_physicsnemo_patches(name: str) -> None:
    """Patch inputs take their slice of the positional grid through global_index."""
    case = CASES[name]
    net = load_physicsnemo(FIXTURES / case["mdlus"])
    a = _arrays(case)
    index = a["global_index"]
    with torch.no_grad():
        out = _run(net, case["call"], a, "_patches", global_index=index)
        # The same selection through an embedding_selector.
        batch = a["x_patches"].shape[0] // index.shape[0]

        def selector(grid: torch.Tensor) -> torch.Tensor:
            if grid.ndim == 4:  # lead-time rows (batch, C, H, W): element b * P + p
                cut = grid[:, :, index[:, 0], index[:, 1]]  # (batch, C, P, h, w)
                return cut.transpose(1, 2).reshape(-1, grid.shape[1], *index.shape[-2:])
            return grid[:, index[:, 0], index[:, 1]].permute(1, 0, 2, 3).repeat(batch, 1, 1, 1)

        out_sel = _run(net, case["call"], a, "_patches", embedding_selector=selector)
    err = max_relative_error(out, a["out_patches"])
    print(f"\nphysicsnemo-equality case={name}[patches] max_rel_err={err:.2e}")
    assert err <= RTOL
    assert max_relative_error(out_sel, a["out_patches"]) <= RTOL


def test_legacy_fixtures_really_use_legacy_names() -> None:
    for file in ("edm_sr_legacy_keys.mdlus", "edm_sr_legacy_keys_tar.mdlus"):
        _, _, state_dict = read_mdlus(FIXTURES / file)
        assert any(k.endswith(".norm2.weight") for k in state_dict)
        assert not any(".attn." in k for k in state_dict)
    assert tarfile.is_tarfile(FIXTURES / "edm_sr_legacy_keys_tar.mdlus")
    assert zipfile.is_zipfile(FIXTURES / "edm_sr_legacy_keys.mdlus")


def test_state_dict_names_match_physicsnemo() -> None:
    """Our freshly built module has exactly PhysicsNeMo's keys (persistent buffers included)."""
    for name, case in CASES.items():
        args, _, state_dict = read_mdlus(FIXTURES / case["mdlus"])
        ours = load_physicsnemo(FIXTURES / case["mdlus"])
        fresh = type(ours)(**ours.config)
        assert set(fresh.state_dict()) == set(rename_legacy_keys(state_dict)), name
        assert args["__name__"] == case["class"]


def test_rename_legacy_keys() -> None:
    t = torch.zeros(1)
    renamed = rename_legacy_keys(
        {
            "model.enc.16x16_block0.norm2.weight": t,
            "model.dec.8x8_in0.qkv.bias": t,
            "model.dec.8x8_in0.proj.weight": t,
            "model.enc.16x16_block0.norm1.weight": t,
            "model.map_layer0.device_buffer": t,
            "model.enc.16x16_block0.attn.qkv.weight": t,
        }
    )
    assert list(renamed) == [
        "model.enc.16x16_block0.attn.norm.weight",
        "model.dec.8x8_in0.attn.qkv.bias",
        "model.dec.8x8_in0.attn.proj.weight",
        "model.enc.16x16_block0.norm1.weight",
        "model.enc.16x16_block0.attn.qkv.weight",
    ]
    with pytest.raises(ValueError, match="both the legacy key"):
        rename_legacy_keys({"enc.4x4_block0.qkv.weight": t, "enc.4x4_block0.attn.qkv.weight": t})


# Parameter counts (meta device: no memory, no init cost).


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_count_cwa_regression() -> None:
    """CWA regression UNet (PhysicsNeMo CorrDiff config): 79,673,988 parameters."""
    with torch.device("meta"):
        net = CorrDiffRegressionUNet(
            img_resolution=448,
            img_in_channels=12 + 4,
            img_out_channels=4,
            model_channels=128,
            channel_mult=[1, 2, 2, 2, 2],
            attn_resolutions=[28],
            num_blocks=4,
            embedding_type="zero",
            dropout=0.13,
        )
    assert _count(net) == 79_673_988 == MANIFEST["parameter_counts"]["cwa_regression"]


@pytest.mark.parametrize("img_in_channels", [0, 6, 10])
def test_parameter_count_mini_regression(img_in_channels: int) -> None:
    with torch.device("meta"):
        net = UNet(
            img_resolution=64,
            img_in_channels=img_in_channels,
            img_out_channels=2,
            model_channels=64,
            channel_mult=[1, 2, 2],
            attn_resolutions=[16],
            num_blocks=4,
            embedding_type="zero",
            N_grid_channels=min(img_in_channels, 4),
        )
    assert _count(net) == 10_842_690 + 576 * img_in_channels
    if img_in_channels == 6:
        assert _count(net) == MANIFEST["parameter_counts"]["mini_regression_img_in_channels_6"]


# Bad or hostile files.


def _write_zip(path: pathlib.Path, members: dict[str, bytes]) -> pathlib.Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _args(name: str = "SongUNet") -> bytes:
    args = {"img_resolution": 8, "in_channels": 1, "out_channels": 1, "model_channels": 8}
    args.update(channel_mult=[1], attn_resolutions=[], num_blocks=1)
    return json.dumps({"__name__": name, "__module__": "physicsnemo.x", "__args__": args}).encode()


class _Evil:
    """Unpickling this would create a file."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (self.target, "w"))


def test_malicious_pickle_is_refused_without_executing(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "pwned.txt"
    payload = pickle.dumps({"weight": _Evil(str(target))}, protocol=2)
    buffer = io.BytesIO()
    torch.save({"weight": _Evil(str(target))}, buffer)
    for i, model_pt in enumerate((payload, buffer.getvalue())):
        path = _write_zip(
            tmp_path / f"evil{i}.mdlus",
            {"args.json": _args(), "metadata.json": b"{}", "model.pt": model_pt},
        )
        with pytest.raises(CheckpointError, match="refused it without executing anything"):
            load_physicsnemo(path)
        assert not target.exists()


def test_unknown_class_lists_supported(tmp_path: pathlib.Path) -> None:
    buffer = io.BytesIO()
    torch.save({}, buffer)
    path = _write_zip(
        tmp_path / "fc.mdlus", {"args.json": _args("FullyConnected"), "model.pt": buffer.getvalue()}
    )
    with pytest.raises(
        CheckpointError, match=r"'FullyConnected'.*supported classes: UNet, .*SongUNetPosEmbd"
    ):
        load_physicsnemo(path)


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ({"args.json": b"{}"}, "has no 'model.pt'"),
        ({"args.json": b"not json", "model.pt": b""}, "args.json is not valid JSON"),
        ({"args.json": b"[1]", "model.pt": b""}, "expected a JSON object"),
        ({"args.json": _args(), "model.pt": b"garbage"}, "refused it without executing"),
    ],
)
def test_broken_checkpoints(tmp_path: pathlib.Path, members: dict[str, bytes], match: str) -> None:
    with pytest.raises(CheckpointError, match=match):
        load_physicsnemo(_write_zip(tmp_path / "bad.mdlus", members))


def test_not_an_archive_and_missing_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "plain.mdlus"
    path.write_bytes(b"hello" * 100)
    with pytest.raises(CheckpointError, match="neither a zip nor a tar"):
        load_physicsnemo(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_physicsnemo(tmp_path / "missing.mdlus")


def test_truncated_checkpoint(tmp_path: pathlib.Path) -> None:
    data = (FIXTURES / "posembd_sinusoidal8.mdlus").read_bytes()
    path = tmp_path / "truncated.mdlus"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_physicsnemo(path)


def test_unsupported_arguments_and_weights(tmp_path: pathlib.Path) -> None:
    buffer = io.BytesIO()
    torch.save({"nonsense": torch.zeros(1)}, buffer)
    args = json.loads(_args())
    path = _write_zip(
        tmp_path / "w.mdlus",
        {"args.json": json.dumps(args).encode(), "model.pt": buffer.getvalue()},
    )
    with pytest.raises(CheckpointError, match="weights do not fit SongUNet"):
        load_physicsnemo(path)
    args["__args__"]["brand_new_option"] = 1
    path = _write_zip(
        tmp_path / "a.mdlus",
        {"args.json": json.dumps(args).encode(), "model.pt": buffer.getvalue()},
    )
    with pytest.raises(CheckpointError, match="brand_new_option"):
        load_physicsnemo(path)
    args["__args__"].pop("brand_new_option")
    args["__args__"]["encoder_type"] = "residual"
    path = _write_zip(
        tmp_path / "e.mdlus",
        {"args.json": json.dumps(args).encode(), "model.pt": buffer.getvalue()},
    )
    with pytest.raises(ValueError, match="encoder_type 'residual' is not supported"):
        load_physicsnemo(path)


def test_old_checkpoint_variants_load(tmp_path: pathlib.Path) -> None:
    """Version-0.1.0 regression arguments and non-persistent positional frequencies."""
    args, _, state_dict = read_mdlus(FIXTURES / "regression_mini_unet.mdlus")
    args["__args__"].update(img_channels=2, sigma_min=0.0, sigma_max="inf", sigma_data=0.5)
    args["__module__"] = "modulus.models.diffusion.unet"
    state_dict["model.device_buffer"] = torch.empty(0)
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    path = _write_zip(
        tmp_path / "old.mdlus",
        {"args.json": json.dumps(args).encode(), "model.pt": buffer.getvalue()},
    )
    net = load_physicsnemo(path)
    a = _arrays(CASES["regression_mini_unet"])
    with torch.no_grad():
        assert max_relative_error(net(a["x"], a["img_lr"]), a["out"]) <= RTOL

    args, _, state_dict = read_mdlus(FIXTURES / "edm_superres_learnable.mdlus")
    del state_dict["model.map_noise.freqs"]
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    path = _write_zip(
        tmp_path / "old_freqs.mdlus",
        {"args.json": json.dumps(args).encode(), "model.pt": buffer.getvalue()},
    )
    net = load_physicsnemo(path)
    a = _arrays(CASES["edm_superres_learnable"])
    with torch.no_grad():
        assert max_relative_error(net(a["x"], a["img_lr"], a["sigma"]), a["out"]) <= RTOL


def test_loaded_config_rebuilds_and_is_json(tmp_path: pathlib.Path) -> None:
    net = load_physicsnemo(FIXTURES / "edm_sr_legacy_keys_tar.mdlus")
    assert isinstance(net, EDMPrecondSR)
    text = json.dumps(net.config)
    rebuilt = EDMPrecondSR(**json.loads(text))
    rebuilt.load_state_dict(net.state_dict())
    assert net.sigma_min == 0.0 and math.isinf(net.sigma_max) and net.sigma_data == 0.5
    assert net.config["scale_cond_input"] is True and net.config["img_channels"] == 4
    for cls in (SongUNet, SongUNetPosEmbd, EDMPrecondSuperResolution):
        assert cls.__module__.startswith("xcorrdiff.nn")
