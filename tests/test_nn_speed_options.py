"""The speed options change layout and execution, never the numbers or the checkpoint."""

from __future__ import annotations

import pytest
import torch

from xcorrdiff.nn import EDMPrecondSuperResolution, maybe_compile, set_channels_last
from xcorrdiff.nn.compile import is_compiled


def _net() -> EDMPrecondSuperResolution:
    torch.manual_seed(0)
    return EDMPrecondSuperResolution(
        img_resolution=(16, 24), img_in_channels=3 + 4, img_out_channels=2, model_channels=8,
        channel_mult=[1, 2], attn_resolutions=[8], num_blocks=1, N_grid_channels=4,
        gridtype="sinusoidal", embedding_type="positional",
    ).eval()  # fmt: skip


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 2, 16, 24, generator=g)
    cond = torch.randn(2, 3, 16, 24, generator=g)
    return x, cond, torch.tensor([0.5, 3.0])


def test_channels_last_matches_default_layout_and_keeps_state_dict() -> None:
    net = _net()
    x, cond, sigma = _inputs()
    with torch.no_grad():
        expected = net(x, cond, sigma)
    keys = list(net.state_dict())
    set_channels_last(net)
    assert any(
        p.ndim == 4 and p.is_contiguous(memory_format=torch.channels_last)
        and not p.is_contiguous()
        for p in net.parameters()
    )  # fmt: skip
    with torch.no_grad():
        out = net(x, cond, sigma)
    assert list(net.state_dict()) == keys
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    set_channels_last(net, enabled=False)
    assert all(p.is_contiguous() for p in net.parameters())


def test_channels_last_needs_a_songunet() -> None:
    with pytest.raises(ValueError, match="needs a module holding a SongUNet"):
        set_channels_last(torch.nn.Linear(2, 2))


def test_maybe_compile_falls_back_to_eager_when_compilation_fails() -> None:
    def failing_backend(gm, example_inputs):  # type: ignore[no-untyped-def]
        raise RuntimeError("deliberately failing backend")

    net = _net()
    x, cond, sigma = _inputs()
    with torch.no_grad():
        expected = net(x, cond, sigma)
    keys = list(net.state_dict())
    assert maybe_compile(net, backend=failing_backend) is net
    assert is_compiled(net)
    with pytest.warns(RuntimeWarning, match="running it eagerly"), torch.no_grad():
        out = net(x, cond, sigma)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert list(net.state_dict()) == keys
    assert not is_compiled(net)
    with torch.no_grad():  # later calls run eagerly without warning again
        torch.testing.assert_close(net(x, cond, sigma), expected, rtol=0, atol=0)
