"""DiT: the Diffusion Transformer of NVIDIA's CorrDiff-family ``CorrDiffEra5Hrrr``.

State_dict-compatible with PhysicsNeMo 2.2.2's ``physicsnemo.models.dit.DiT`` for the
configurations a 2-D downscaling model uses: the patch tokenizer, the projecting
detokenizer (with or without its convolution head), full (``"timm"``) or 2-D neighborhood
(``"natten2d"``, and with rotary embeddings ``"natten2d_rope"``, the released
``CorrDiffEra5Hrrr`` network's) attention, and the ``"dit"`` or ``"edm"`` noise-level embedders. Its
arguments are PhysicsNeMo's, so a checkpoint's ``args.json`` builds it; what it does not
implement (HEALPix tokens, Transformer Engine, invalid-region mask tokens in use) is
refused by name. Inference only: dropout and stochastic depth rates
are accepted and inactive.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
from torch import nn

from .dit_layers import (
    ConvDetokenizer,
    DiTBlock,
    DiTConditionEmbedder,
    EDMConditionEmbedder,
    PatchTokenizer,
    ProjectionDetokenizer,
    axial_rope,
    token_grid,
)
from .song_unet import json_config

__all__ = ["DiT"]

_DETOKENIZERS = ("proj_reshape_2d", "proj_reshape_2d_conv")


def _pair(name: str, value: int | Sequence[int]) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(not isinstance(v, int) or v < 1 for v in pair):
        raise ValueError(f"{name}={value!r} is invalid; expected a positive integer or two")
    return pair[0], pair[1]


def _embedder(
    kind: str, hidden_size: int, condition_dim: int, options: Mapping[str, Any]
) -> nn.Module:
    if kind == "dit":
        return DiTConditionEmbedder(hidden_size, condition_dim, **options)
    if kind == "edm":
        embedder = EDMConditionEmbedder(condition_dim=condition_dim, **options)
        if embedder.output_dim != hidden_size:
            raise ValueError(
                f"conditioning_embedder_kwargs emb_channels={embedder.output_dim} must equal "
                f"hidden_size={hidden_size} (the detokenizer's modulation takes that width)"
            )
        return embedder
    raise ValueError(f"conditioning_embedder={kind!r} is not supported; expected 'dit' or 'edm'")


def _check_supported(tokenizer: str, detokenizer: str, tokenizer_kwargs: Mapping[str, Any]) -> None:
    if tokenizer != "patch_embed_2d":
        raise ValueError(f"tokenizer={tokenizer!r} is not supported; expected 'patch_embed_2d'")
    if detokenizer not in _DETOKENIZERS:
        raise ValueError(
            f"detokenizer={detokenizer!r} is not supported; expected one of {list(_DETOKENIZERS)}"
        )
    unknown = sorted(set(tokenizer_kwargs) - {"pos_embed"})
    if unknown:
        raise ValueError(f"tokenizer_kwargs {unknown} are not supported; supported: ['pos_embed']")


class DiT(nn.Module):
    r"""Diffusion Transformer: patch tokens, adaLN-modulated attention blocks, a
    projection back to pixels (Peebles & Xie 2023), as PhysicsNeMo builds it.

    Parameters
    ----------
    input_size : int or (int, int)
        Spatial size ``(H, W)`` of the input, divisible by ``patch_size``; the token grid
        (and a neighborhood-attention model's window layout) is fixed by it.
    in_channels : int
        Input channels (the state plus, in a ``ConcatConditionWrapper``, its conditioning).
    patch_size : int or (int, int), default (8, 8)
        Pixels per token.
    out_channels : int, optional
        Output channels; default ``in_channels``.
    hidden_size, depth, num_heads, mlp_ratio
        Token width, blocks, attention heads, MLP width over token width.
    attention_backend : {"timm", "natten2d", "natten2d_rope"}, default "timm"
        Full self-attention, or neighborhood attention over ``attn_kwargs["attn_kernel"]``²
        tokens (:func:`~xcorrdiff.nn.neighborhood.neighborhood_attention_2d`), with axial
        2-D rotary embeddings of the queries and keys for ``"natten2d_rope"``
        (``attn_kwargs["rope_theta"]``, default 10000; no additive position embedding).
    layernorm_backend : {"torch", "apex"}, default "torch"
        Both compute the same affine-free layer norm here.
    condition_dim : int, optional
        Width of the scalar conditions (0 or None: none).
    conditioning_embedder : {"dit", "edm"}, default "dit"
        Embedding of the time or noise level (and the conditions).
    tokenizer, detokenizer, conditioning_embedder_kwargs, tokenizer_kwargs,
    detokenizer_kwargs, block_kwargs, attn_kwargs
        As PhysicsNeMo's DiT (``tokenizer="patch_embed_2d"``; ``detokenizer`` one of
        ``"proj_reshape_2d"``, ``"proj_reshape_2d_conv"``).
    dit_initialization, drop_path_rates, force_tokenization_fp32, use_nan_mask_tokens
        Accepted as PhysicsNeMo's; the initialization is PhysicsNeMo's zeroed modulation
        and output only (weights are meant to be loaded); ``force_tokenization_fp32`` runs
        the tokenizer and detokenizer outside autocast; mask tokens are allocated (so
        checkpoints load) and, no invalid mask being passed, never used.

    Examples
    --------
    >>> net = DiT(input_size=(16, 32), in_channels=3, out_channels=2, patch_size=4,
    ...           hidden_size=32, depth=2, num_heads=4, condition_dim=2,
    ...           attention_backend="natten2d", attn_kwargs={"attn_kernel": 3})
    >>> net(torch.zeros(1, 3, 16, 32), torch.zeros(1), torch.zeros(1, 2)).shape
    torch.Size([1, 2, 16, 32])
    """

    rope_cos: torch.Tensor | None
    rope_sin: torch.Tensor | None

    def __init__(
        self,
        input_size: int | Sequence[int],
        in_channels: int,
        patch_size: int | Sequence[int] = (8, 8),
        tokenizer: str = "patch_embed_2d",
        detokenizer: str = "proj_reshape_2d",
        out_channels: int | None = None,
        hidden_size: int = 384,
        depth: int = 12,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        attention_backend: str = "timm",
        layernorm_backend: str = "torch",
        condition_dim: int | None = None,
        conditioning_embedder: str = "dit",
        dit_initialization: bool = True,
        conditioning_embedder_kwargs: Mapping[str, Any] | None = None,
        tokenizer_kwargs: Mapping[str, Any] | None = None,
        detokenizer_kwargs: Mapping[str, Any] | None = None,
        block_kwargs: Mapping[str, Any] | None = None,
        attn_kwargs: Mapping[str, Any] | None = None,
        drop_path_rates: Sequence[float] | None = None,
        force_tokenization_fp32: bool = False,
        use_nan_mask_tokens: bool = False,
    ) -> None:
        self.config = json_config(locals())
        super().__init__()
        self.input_size = _pair("input_size", input_size)
        self.patch_size = _pair("patch_size", patch_size)
        if any(s % p for s, p in zip(self.input_size, self.patch_size, strict=True)):
            raise ValueError(
                f"input_size={input_size!r} is not divisible by patch_size={patch_size!r}"
            )
        _check_supported(tokenizer, detokenizer, tokenizer_kwargs or {})
        if drop_path_rates is not None and len(drop_path_rates) != depth:
            raise ValueError(
                f"drop_path_rates has {len(drop_path_rates)} rates; expected depth={depth}"
            )
        attn = dict(attn_kwargs or {})
        if use_nan_mask_tokens:
            if not attention_backend.startswith("natten2d"):
                raise ValueError("use_nan_mask_tokens=True requires a natten2d attention_backend")
            attn["use_mask_token"] = True
        self.in_channels, self.out_channels = in_channels, out_channels or in_channels
        self.condition_dim = condition_dim or 0
        self.latent_hw = token_grid(self.input_size, self.patch_size)
        self.force_tokenization_fp32 = force_tokenization_fp32
        tokens = dict(tokenizer_kwargs or {})
        self.register_buffer("rope_cos", None, persistent=False)
        self.register_buffer("rope_sin", None, persistent=False)
        if attention_backend == "natten2d_rope":  # positions by rotation, not added (PhysicsNeMo)
            tokens["pos_embed"] = "none"
            theta = float(attn.pop("rope_theta", 10000.0))
            cos, sin = axial_rope(*self.latent_hw, hidden_size // num_heads, theta)
            # buffers (not in the state dict, as PhysicsNeMo's): they move with the module
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.tokenizer = PatchTokenizer(
            self.input_size, self.patch_size, in_channels, hidden_size, **tokens
        )
        self.conditioning_embedder = _embedder(
            conditioning_embedder,
            hidden_size,
            self.condition_dim,
            conditioning_embedder_kwargs or {},
        )
        kind = ConvDetokenizer if detokenizer == "proj_reshape_2d_conv" else ProjectionDetokenizer
        self.detokenizer = kind(
            self.input_size, self.patch_size, self.out_channels, hidden_size,
            **{"layernorm_backend": layernorm_backend, **(detokenizer_kwargs or {})},
        )  # fmt: skip
        block_options = {k: v for k, v in (block_kwargs or {}).items() if k not in ("drop_path",)}
        self.blocks = nn.ModuleList(
            DiTBlock(
                hidden_size, num_heads, attention_backend=attention_backend,
                layernorm_backend=layernorm_backend, mlp_ratio=mlp_ratio,
                condition_embed_dim=hidden_size, **block_options, **attn,
            )
            for _ in range(depth)
        )  # fmt: skip
        if dit_initialization:
            self._zero_modulation()

    def _zero_modulation(self) -> None:
        """adaLN-Zero: every block's modulation and the output projection start at zero."""
        detokenizer = self.detokenizer
        proj = detokenizer.proj if isinstance(detokenizer, ConvDetokenizer) else detokenizer
        last = [cast(DiTBlock, b).adaptive_modulation[-1] for b in self.blocks]
        last += [proj.proj_layer.adaptive_modulation[-1], proj.proj_layer.output_projection]
        if isinstance(detokenizer, ConvDetokenizer):
            last.append([m for m in detokenizer.conv_head if isinstance(m, nn.Conv2d)][-1])
        for layer in last:
            for parameter in layer.parameters():
                nn.init.zeros_(parameter)

    def _fp32(self, x: torch.Tensor) -> Any:
        if not self.force_tokenization_fp32:
            return contextlib.nullcontext()
        return torch.autocast(x.device.type, enabled=False)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, condition: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x`` ``(N, in_channels, H, W)``, ``t`` ``(N,)``, ``condition``
        ``(N, condition_dim)`` → ``(N, out_channels, H, W)``."""
        if tuple(x.shape[-2:]) != self.input_size:
            raise ValueError(
                f"x has spatial shape {tuple(x.shape[-2:])}; this DiT takes {self.input_size}"
            )
        dtype = x.dtype
        with self._fp32(x):
            tokens = self.tokenizer(x.float() if self.force_tokenization_fp32 else x).to(dtype)
        c = self.conditioning_embedder(t, condition)
        rope = None if self.rope_cos is None else (self.rope_cos, self.rope_sin)
        for block in self.blocks:
            tokens = block(tokens, c, self.latent_hw, rope)
        with self._fp32(x):
            out = self.detokenizer(tokens.float() if self.force_tokenization_fp32 else tokens, c)
        return out.to(dtype)
