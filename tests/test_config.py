"""TrainConfig presets, overrides, validation and serialisation."""

from __future__ import annotations

import dataclasses
import json

import pytest

from xcorrdiff.config import NetworkConfig, SamplerConfig
from xcorrdiff.train.config import TrainConfig


def test_default_is_tiny_and_runs_on_cpu() -> None:
    cfg = TrainConfig()
    assert cfg.preset == "tiny"
    assert cfg == TrainConfig(preset="tiny")
    assert cfg.runtime.device is None  # CUDA when available, else the CPU
    assert cfg.model.regression.model_channels <= 32
    assert cfg.model.regression.channel_mult == (1, 2)
    assert cfg.model.diffusion.embedding_type == "positional"
    assert cfg.model.regression.embedding_type == "zero"
    assert 32 <= cfg.data.patch_shape[0] <= 64


def test_mini_preset_matches_physicsnemo_corrdiff_mini() -> None:
    cfg = TrainConfig(preset="mini")
    for net in (cfg.model.regression, cfg.model.diffusion):
        assert net.model_channels == 64
        assert net.channel_mult == (1, 2, 2)
        assert net.attn_resolutions == (16,)
        assert net.num_blocks == 4
        assert net.dropout == pytest.approx(0.13)
        assert net.N_grid_channels == 4
        assert net.gridtype == "sinusoidal"
    assert cfg.data.batch_size == 256
    assert cfg.optimization.learning_rate == pytest.approx(2e-4)


def test_normal_preset_is_the_cwa_network() -> None:
    cfg = TrainConfig(preset="normal")
    assert cfg.model.diffusion.model_channels == 128
    assert cfg.model.diffusion.channel_mult == (1, 2, 2, 2, 2)
    assert cfg.model.diffusion.attn_resolutions == (28,)
    assert cfg.data.patch_shape == (448, 448)
    assert cfg.data.patches_per_sample > 1
    assert cfg.data.patches_per_step == cfg.data.batch_size * cfg.data.patches_per_sample
    assert cfg.runtime.precision == "bfloat16"


def test_explicit_values_override_the_preset() -> None:
    cfg = TrainConfig(preset="mini", batch_size=3, learning_rate=1e-3, on_nonfinite="skip")
    assert (cfg.data.batch_size, cfg.optimization.learning_rate, cfg.optimization.on_nonfinite) == (
        3,
        1e-3,
        "skip",
    )
    assert cfg.model.regression.model_channels == 64  # the rest still comes from the preset


def test_unknown_preset_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"preset='huge'.*\['tiny', 'mini', 'normal'\]"):
        TrainConfig(preset="huge")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, r"batch_size=0 is invalid; expected an integer >= 1"),
        ({"learning_rate": -1.0}, r"learning_rate=-1.0"),
        ({"precision": "fp16"}, r"precision='float16'.*\['float32', 'bfloat16'\]"),
        ({"on_nonfinite": "ignore"}, r"on_nonfinite='ignore'.*\['raise', 'skip'\]"),
        ({"patch_shape": (48, 51)}, r"patch_shape=\(48, 51\).*divisible by 2"),
        ({"lr_decay": 1.5}, r"lr_decay=1.5"),
        ({"validation_fraction": 1.0}, r"validation_fraction=1.0"),
        ({"grad_clip": 0.0}, r"grad_clip=0.0"),
        ({"residual_scaling": "yes"}, r"residual_scaling='yes' is invalid; expected True or False"),
    ],
)
def test_invalid_values_name_the_argument(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)  # type: ignore[arg-type]


def test_frozen_and_keyword_only() -> None:
    cfg = TrainConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.data.batch_size = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        TrainConfig("tiny")  # type: ignore[misc]


def test_round_trip_through_json() -> None:
    cfg = TrainConfig(preset="normal", checkpoint_dir="/tmp/x", grad_clip=None)
    back = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg
    with pytest.raises(ValueError, match=r"unknown keys \['bogus'\]"):
        TrainConfig.from_dict({**cfg.to_dict(), "bogus": 1})


def test_network_dict_is_accepted_and_validated() -> None:
    net = {"model_channels": 8, "channel_mult": [1, 2, 2], "num_blocks": 1}
    cfg = TrainConfig(regression=net, patch_shape=(32, 32))  # type: ignore[arg-type]
    assert cfg.model.regression == NetworkConfig(model_channels=8, channel_mult=(1, 2, 2))
    assert cfg.model.regression.downsampling_factor == 4
    with pytest.raises(ValueError, match=r"dropout=1.0"):
        NetworkConfig(model_channels=8, channel_mult=(1,), dropout=1.0)
    with pytest.raises(ValueError, match=r"channel_mult=\(\) is invalid"):
        NetworkConfig(model_channels=8, channel_mult=())
    with pytest.raises(ValueError, match=r"bottleneck_attention='no' is invalid"):
        NetworkConfig(model_channels=8, channel_mult=(1,), bottleneck_attention="no")  # type: ignore[arg-type]


@pytest.mark.parametrize("attention", [True, False])
def test_bottleneck_attention_reaches_the_network(attention: bool) -> None:
    from xcorrdiff.train import build_regression

    net = NetworkConfig(
        model_channels=8, channel_mult=(1, 2), embedding_type="zero", bottleneck_attention=attention
    )
    unet = build_regression(
        TrainConfig(regression=net), shape=(16, 16), in_channels=3, out_channels=2
    )
    bottleneck = unet.model.dec["8x8_in0"]
    assert (bottleneck.attn is not None) is attention
    assert NetworkConfig.from_dict(json.loads(json.dumps(net.to_dict()))) == net


def test_sampler_defaults_follow_the_optimized_corrdiff() -> None:
    s = SamplerConfig()
    assert (s.sampler, s.num_steps, s.sigma_min, s.sigma_max, s.rho) == (
        "euler",
        12,
        0.002,
        800.0,
        7.0,
    )
    assert SamplerConfig.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match=r"sigma_min=1.0 must be smaller than sigma_max=0.5"):
        SamplerConfig(sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match=r"sampler='ddim'"):
        SamplerConfig(sampler="ddim")  # type: ignore[arg-type]


def test_output_transforms_are_validated_and_round_trip() -> None:
    config = TrainConfig(preset="tiny", output_transforms={"precip": "log1p", "t2m": "none"})
    assert config.data.output_transforms == (("precip", "log1p"), ("t2m", "none"))
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert TrainConfig(preset="tiny").data.output_transforms == ()
    with pytest.raises(ValueError, match=r"output_transforms\['precip'\]='sqrt' is invalid"):
        TrainConfig(preset="tiny", output_transforms={"precip": "sqrt"})
    with pytest.raises(TypeError, match="expected a mapping of variable names"):
        TrainConfig(preset="tiny", output_transforms=5)  # type: ignore[arg-type]
