"""Learning-rate schedule, EMA and the pickle-free checkpoint encoding."""

from __future__ import annotations

import math
import os
import random
import stat

import numpy as np
import pytest
import torch

from xcorrdiff.train.checkpoint import (
    capture_rng,
    decode,
    encode,
    read_checkpoint,
    restore_rng,
    write_checkpoint,
)
from xcorrdiff.train.schedule import ema_beta, learning_rate, update_ema


def _closed_formula(n: int, base: float, rampup: int, decay: float, decay_rate: int) -> float:
    warm = min(n / rampup, 1.0) if rampup > 0 else 1.0
    return base * warm * decay ** math.floor(max(n - rampup, 0) / decay_rate)


def _physicsnemo_sequence(
    steps: int, batch: int, base: float, rampup: int, decay: float, decay_rate: int
) -> list[float]:
    """PhysicsNeMo's CorrDiff example: the decay multiplies the optimizer's current lr."""
    lr, out = base, []
    for step in range(steps):
        n = step * batch
        if rampup > 0:
            lr = base * min(n / rampup, 1)
        if n >= rampup:
            lr *= decay ** ((n - rampup) // decay_rate)
        out.append(lr)
    return out


@pytest.mark.parametrize("rampup", [0, 7, 64])
def test_learning_rate_follows_the_closed_formula(rampup: int) -> None:
    for n in range(0, 400, 3):
        expected = _closed_formula(n, 2e-4, rampup, 0.7, 50)
        assert learning_rate(n, base=2e-4, rampup=rampup, decay=0.7, decay_rate=50) == (
            pytest.approx(expected, rel=1e-12)
        )


def test_learning_rate_warmup_and_decay_points() -> None:
    kw = {"base": 1.0, "rampup": 100, "decay": 0.5, "decay_rate": 10}
    assert learning_rate(0, **kw) == 0.0
    assert learning_rate(50, **kw) == 0.5
    assert learning_rate(100, **kw) == 1.0
    assert learning_rate(109, **kw) == 1.0
    assert learning_rate(110, **kw) == 0.5
    assert learning_rate(135, **kw) == 0.125
    with pytest.raises(ValueError, match=r"n=-1 is invalid"):
        learning_rate(-1, **kw)


def test_physicsnemo_schedule_compounds_without_warmup_and_ours_does_not() -> None:
    batch, steps = 4, 60
    kw = {"base": 1.0, "rampup": 0, "decay": 0.9, "decay_rate": 40}
    theirs = _physicsnemo_sequence(steps, batch, **kw)
    ours = [learning_rate(s * batch, **kw) for s in range(steps)]
    # Both agree until the first decay boundary (n = 40, step 10) ...
    assert theirs[:10] == pytest.approx(ours[:10])
    # ... then theirs multiplies by 0.9 again at every step: after step 19 it is 0.9**10,
    # where the formula says 0.9**1 (n = 76 < 80).
    assert ours[19] == pytest.approx(0.9)
    assert theirs[19] == pytest.approx(0.9**10)
    assert theirs[-1] < 1e-3 < ours[-1]
    # With a warm-up, theirs resets the rate each step and matches the formula.
    warm = {"base": 1.0, "rampup": 8, "decay": 0.9, "decay_rate": 40}
    assert _physicsnemo_sequence(steps, batch, **warm) == pytest.approx(
        [learning_rate(s * batch, **warm) for s in range(steps)]
    )


def test_ema_beta_follows_edm() -> None:
    # Half-life of 100 samples at batch 10: beta**10 steps = 0.5.
    beta = ema_beta(10_000, 10, halflife=100, rampup_ratio=None)
    assert beta**10 == pytest.approx(0.5)
    # Ramp-up: early on the half-life is ratio * samples seen.
    assert ema_beta(100, 10, halflife=1000, rampup_ratio=0.5) == pytest.approx(0.5 ** (10 / 50))
    assert ema_beta(0, 10, halflife=1000, rampup_ratio=0.5) == 0.0


def test_update_ema_moves_towards_the_network() -> None:
    net, ema = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.fill_(1.0)
        ema.weight.fill_(0.0)
    update_ema(ema, net, beta=0.75)
    assert torch.allclose(ema.weight, torch.full_like(ema.weight, 0.25))
    update_ema(ema, net, beta=0.0)
    assert torch.equal(ema.weight, net.weight)


def test_encode_decode_round_trip() -> None:
    obj = {
        "tuple": (1, (2.5, "a")),
        "int_keys": {0: torch.arange(3), 7: None},
        "array": np.arange(4, dtype=np.int16),
        "nested": [{"x": float("inf")}],
        "__reserved": 1,
    }
    tensors: dict[str, torch.Tensor] = {}
    back = decode(encode(obj, tensors, "p"), tensors)
    assert back["tuple"] == (1, (2.5, "a"))
    assert torch.equal(back["int_keys"][0], torch.arange(3)) and back["int_keys"][7] is None
    assert back["array"].dtype == np.int16 and back["array"].tolist() == [0, 1, 2, 3]
    assert back["nested"] == [{"x": float("inf")}]
    assert back["__reserved"] == 1
    with pytest.raises(TypeError, match=r"cannot store object at 'p.bad'"):
        encode({"bad": object()}, {}, "p")


def test_checkpoint_file_restores_optimizer_and_rng(tmp_path) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.8, 0.95))
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    gen = torch.Generator().manual_seed(5)
    rng = np.random.default_rng(1)
    path = write_checkpoint(
        tmp_path / "ck.safetensors",
        {"opt": opt.state_dict(), "rng": capture_rng({"g": gen, "n": rng})},
    )
    assert [p.name for p in tmp_path.iterdir()] == ["ck.safetensors"]  # no temporary left
    expected = (torch.rand(3, generator=gen), rng.random(), random.random(), torch.rand(2))
    state = read_checkpoint(path)
    restore_rng(state["rng"], {"g": gen, "n": rng})
    got = (torch.rand(3, generator=gen), rng.random(), random.random(), torch.rand(2))
    assert torch.equal(got[0], expected[0]) and got[1] == expected[1]
    assert got[2] == expected[2] and torch.equal(got[3], expected[3])
    opt2 = torch.optim.Adam(net.parameters())
    opt2.load_state_dict(state["opt"])
    assert opt2.state_dict()["param_groups"][0]["betas"] == (0.8, 0.95)
    for k, v in opt.state_dict()["state"][0].items():
        assert torch.equal(opt2.state_dict()["state"][0][k], v)


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_checkpoint_files_follow_the_umask(tmp_path, umask: int, mode: int) -> None:  # type: ignore[no-untyped-def]
    old = os.umask(umask)
    try:
        path = write_checkpoint(tmp_path / "ck.safetensors", {"step": 3})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode


def test_reading_a_foreign_safetensors_file_fails_clearly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, tmp_path / "weights.safetensors")
    with pytest.raises(ValueError, match=r"is not an xcorrdiff training checkpoint"):
        read_checkpoint(tmp_path / "weights.safetensors")
