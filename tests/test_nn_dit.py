"""The CorrDiff-family DiT against PhysicsNeMo 2.2.2's, and neighborhood attention against
its definition.

The fixtures (``tests/fixtures/physicsnemo_dit``, written by
``tests/fixtures/make_dit_fixtures.py``) are PhysicsNeMo's own ``DiT`` with random weights,
saved by its ``Module.save``, with its outputs; the full-attention case runs the real
timm ``Attention``, the neighborhood-attention cases NATTEN's definition (NATTEN has no
CPU build; the script says how it stands in).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xcorrdiff.nn import load_physicsnemo
from xcorrdiff.nn import neighborhood as na
from xcorrdiff.nn.dit import DiT
from xcorrdiff.nn.registry import build_network

FIXTURES = Path(__file__).parent / "fixtures" / "physicsnemo_dit"
CASES = sorted(json.loads((FIXTURES / "manifest.json").read_text())["cases"])


@pytest.mark.parametrize("case", CASES)
def test_dit_matches_physicsnemo(case: str) -> None:
    net = load_physicsnemo(FIXTURES / f"{case}.mdlus")
    data = np.load(FIXTURES / f"{case}.npz")
    assert isinstance(net, DiT) and not net.training
    with torch.no_grad():
        out = net(*(torch.from_numpy(data[k]) for k in ("x", "t", "condition")))
    expected = torch.from_numpy(data["out"])
    assert float(expected.abs().mean()) > 0.5  # the weights are all random: a real check
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    manifest = json.loads((FIXTURES / "manifest.json").read_text())["cases"][case]
    assert sum(p.numel() for p in net.parameters()) == manifest["parameters"]


def test_dit_rebuilds_from_its_config() -> None:
    net = load_physicsnemo(FIXTURES / "natten_edm_conv.mdlus")
    again = build_network("DiT", net.config, where="test")
    again.load_state_dict(net.state_dict())
    x, t, c = torch.randn(1, 4, 16, 24), torch.tensor([0.3]), torch.randn(1, 2)
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x, t, c), net(x, t, c), rtol=0, atol=0)


def brute_force(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: tuple[int, int]):
    """Dense attention over all tokens with every key outside NATTEN's window masked,
    the window start from NATTEN's CPU kernel formula, in float64."""
    b, h, w, heads, d = q.shape

    def start(i: int, length: int, size: int) -> int:
        n = size // 2
        return max(i - n, 0) + (i + n >= length) * (length - i - n - 1)

    allowed = torch.zeros(h * w, h * w, dtype=torch.bool)
    for i in range(h):
        for j in range(w):
            r, c = start(i, h, kernel[0]), start(j, w, kernel[1])
            window = torch.zeros(h, w, dtype=torch.bool)
            window[r : r + kernel[0], c : c + kernel[1]] = True
            allowed[i * w + j] = window.flatten()
    flat = [t.double().reshape(b, h * w, heads, d).transpose(1, 2) for t in (q, k, v)]
    out = F.scaled_dot_product_attention(*flat, attn_mask=allowed)
    return out.transpose(1, 2).reshape(b, h, w, heads, d)


@pytest.mark.parametrize(
    ("shape", "kernel"), [((5, 7), 3), ((6, 9), 5), ((4, 6), (3, 5)), ((3, 3), 1)]
)
def test_neighborhood_attention_is_natten_s_definition(shape: tuple, kernel) -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, *shape, 3, 4, generator=g) for _ in range(3))
    out = na.neighborhood_attention_2d(q, k, v, kernel)
    sizes = (kernel, kernel) if isinstance(kernel, int) else kernel
    torch.testing.assert_close(out.double(), brute_force(q, k, v, sizes), rtol=1e-5, atol=1e-6)


def test_a_window_the_size_of_the_grid_is_full_attention_and_blocks_change_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 5, 7, 2, 8, generator=g) for _ in range(3))
    out = na.neighborhood_attention_2d(q, k, v, (5, 7), scale=0.3)
    flat = [t.reshape(1, 35, 2, 8).transpose(1, 2) for t in (q, k, v)]
    full = F.scaled_dot_product_attention(*flat, scale=0.3).transpose(1, 2).reshape(q.shape)
    torch.testing.assert_close(out, full, rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(na, "GATHER_BYTES", 1)  # one query row per block
    torch.testing.assert_close(na.neighborhood_attention_2d(q, k, v, (5, 7), scale=0.3), out)
    assert na.window_starts(6, 3).tolist() == [0, 0, 1, 2, 3, 3]


@pytest.mark.parametrize(
    ("kernel", "match"),
    [(4, r"kernel_size=4 is invalid; expected odd"), (9, r"larger than the 5 x 7 token grid")],
)
def test_neighborhood_attention_refuses_bad_kernels(kernel: int, match: str) -> None:
    q = torch.zeros(1, 5, 7, 1, 2)
    with pytest.raises(ValueError, match=match):
        na.neighborhood_attention_2d(q, q, q, kernel)


SMALL = {
    "input_size": (8, 8), "in_channels": 2, "patch_size": 4, "hidden_size": 8, "depth": 1,
    "num_heads": 2,
}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"tokenizer": "hpx_patch_embed"}, r"tokenizer='hpx_patch_embed' is not supported"),
        ({"attention_backend": "transformer_engine"}, r"'transformer_engine' is not supported"),
        (
            {"attention_backend": "natten2d_rope", "hidden_size": 12, "num_heads": 2},
            r"head_dim=6 must be divisible by 4",
        ),
        ({"input_size": (8, 10)}, r"input_size=\(8, 10\) is not divisible by patch_size=4"),
        ({"conditioning_embedder": "zero"}, r"conditioning_embedder='zero' is not supported"),
        ({"use_nan_mask_tokens": True}, r"use_nan_mask_tokens=True requires"),
        (
            {"attention_backend": "natten2d", "attn_kwargs": {"na2d_kwargs": {"dilation": 2}}},
            r"only dilation 1 is supported",
        ),
        ({"attn_kwargs": {"gated": True}}, r"timm attention options \['gated'\] are not supported"),
    ],
)
def test_dit_refuses_what_it_does_not_implement(change: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DiT(**{**SMALL, **change})


def test_dit_refuses_an_input_of_another_size_and_arguments_out_of_bounds(
    tmp_path: Path,
) -> None:
    net = DiT(**SMALL)
    with pytest.raises(ValueError, match=r"x has spatial shape \(8, 12\); this DiT takes \(8, 8\)"):
        net(torch.zeros(1, 2, 8, 12), torch.zeros(1))
    from xcorrdiff.nn.physicsnemo import save_physicsnemo

    save_physicsnemo(net, tmp_path / "dit.mdlus")
    assert isinstance(load_physicsnemo(tmp_path / "dit.mdlus"), DiT)
    with pytest.raises(
        ValueError, match=r"args.json: depth=0 is invalid; expected an integer in \[1, 256\]"
    ):
        build_network("DiT", {**SMALL, "depth": 0}, where="args.json")
