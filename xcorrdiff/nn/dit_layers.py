"""The parts of the CorrDiff-family Diffusion Transformer (pure torch).

Attention (full, as timm's ``Attention``, or 2-D neighborhood, as NATTEN's ``na2d``), the
adaLN-modulated block, the patch tokenizer and the projecting detokenizer, and the
noise-level embedders, each with the attribute names of PhysicsNeMo 2.2.2's
``physicsnemo.nn.module.dit_layers`` and ``conditioning_embedders`` so that state dicts
load unchanged. :class:`~xcorrdiff.nn.DiT` assembles them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .layers import PositionalEmbedding
from .neighborhood import neighborhood_attention_2d

__all__ = [
    "ATTENTION_BACKENDS",
    "ConvDetokenizer",
    "DiTBlock",
    "DiTConditionEmbedder",
    "EDMConditionEmbedder",
    "FullSelfAttention",
    "NeighborhoodSelfAttention",
    "PatchTokenizer",
    "ProjectionDetokenizer",
    "modulate",
]

#: The attention kinds a DiT may name (PhysicsNeMo's ``attention_backend``).
ATTENTION_BACKENDS = ("timm", "natten2d", "natten2d_rope")
#: A rotary embedding's tables ``(cos, sin)``, each ``(h, w, head_dim)``.
Rope = tuple[torch.Tensor, torch.Tensor]


def axial_rope(height: int, width: int, head_dim: int, theta: float = 10000.0) -> Rope:
    """Axial 2-D rotary tables: the first half of each head's channels rotates with the
    token's row, the second with its column, in adjacent pairs at frequencies
    ``theta ** (-2j / (head_dim / 2))`` (PhysicsNeMo's ``build_axial_rope_cos_sin_2d``)."""
    if head_dim % 4:
        raise ValueError(
            f"head_dim={head_dim} must be divisible by 4 for axial 2-D rotary embeddings"
        )
    half = head_dim // 2
    freqs = theta ** (-torch.arange(0, half, 2, dtype=torch.float32) / half)
    rows = (torch.arange(height, dtype=torch.float32)[:, None] * freqs).repeat_interleave(2, -1)
    cols = (torch.arange(width, dtype=torch.float32)[:, None] * freqs).repeat_interleave(2, -1)
    angle = torch.cat(
        [
            rows[:, None, :].expand(height, width, half),
            cols[None, :, :].expand(height, width, half),
        ],
        dim=-1,
    )
    return angle.cos(), angle.sin()


def rotate(x: torch.Tensor, rope: Rope) -> torch.Tensor:
    """``x`` (``..., head_dim``) with each adjacent channel pair ``(a, b)`` rotated to
    ``(a cos - b sin, b cos + a sin)`` by the tables ``rope`` (broadcast against ``x``),
    in float32."""
    cos, sin = rope
    pairs = x.float().unflatten(-1, (-1, 2))
    turned = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    return (x.float() * cos + turned * sin).to(x.dtype)


def token_grid(input_size: tuple[int, int], patch_size: tuple[int, int]) -> tuple[int, int]:
    """Rows and columns of the token grid of non-overlapping patches."""
    return input_size[0] // patch_size[0], input_size[1] // patch_size[1]


def _head_dim(hidden_size: int, num_heads: int) -> int:
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size={hidden_size} is not divisible by num_heads={num_heads}")
    return hidden_size // num_heads


def _split_heads(qkv: torch.Tensor, num_heads: int) -> tuple[torch.Tensor, ...]:
    """``q, k, v``, each ``(B, heads, L, D)``, of a fused projection ``(B, L, 3 heads D)``."""
    b, n, _ = qkv.shape
    return qkv.reshape(b, n, 3, num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)


def modulate(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """adaLN: ``x (1 + scale) + shift`` with per-sample ``scale`` and ``shift`` over tokens."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def _refuse(what: str, options: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"{what} options {unknown} are not supported; supported: {sorted(known)}")


def _qk_norm(kind: str | None, dim: int, affine: bool) -> nn.Module:
    if kind is None:
        return nn.Identity()
    if kind == "LayerNorm":
        return nn.LayerNorm(dim, elementwise_affine=affine)
    if kind == "RMSNorm":
        return nn.RMSNorm(dim, eps=1e-6, elementwise_affine=affine)
    raise ValueError(f"qk_norm_type={kind!r} is invalid; expected None, 'LayerNorm' or 'RMSNorm'")


class _TimmAttention(nn.Module):
    """timm's ``Attention`` with a bias on ``qkv``: ``attn_op`` of :class:`FullSelfAttention`."""

    def __init__(self, dim: int, heads: int, norm: str | None, affine: bool) -> None:
        super().__init__()
        self.num_heads, self.head_dim = heads, _head_dim(dim, heads)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = _qk_norm(norm, self.head_dim, affine)
        self.k_norm = _qk_norm(norm, self.head_dim, affine)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = _split_heads(self.qkv(x), self.num_heads)
        out = F.scaled_dot_product_attention(self.q_norm(q), self.k_norm(k), v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class FullSelfAttention(nn.Module):
    """Self-attention over all tokens (PhysicsNeMo's ``TimmSelfAttention``)."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        qk_norm_type: str | None = None,
        qk_norm_affine: bool = True,
        **options: Any,
    ) -> None:
        super().__init__()
        _refuse("timm attention", options, {"attn_drop_rate", "proj_drop_rate"})
        self.attn_op = _TimmAttention(hidden_size, num_heads, qk_norm_type, qk_norm_affine)

    def forward(self, x: torch.Tensor, **_: Any) -> torch.Tensor:
        return self.attn_op(x)


class NeighborhoodSelfAttention(nn.Module):
    """Self-attention over each token's ``attn_kernel``² neighbours on the 2-D token grid
    (PhysicsNeMo's ``Natten2DSelfAttention``; :func:`neighborhood_attention_2d`)."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        attn_kernel: int = 3,
        qkv_bias: bool = True,
        qk_norm: bool = False,
        norm_layer: str = "torch",
        na2d_kwargs: Mapping[str, Any] | None = None,
        use_mask_token: bool = False,
        **options: Any,
    ) -> None:
        super().__init__()
        _refuse("natten2d attention", options, {"attn_drop_rate", "proj_drop_rate"})
        _refuse("na2d_kwargs", na2d_kwargs or {}, {"scale", "dilation"})
        if (na2d_kwargs or {}).get("dilation", 1) != 1:
            raise ValueError(
                f"na2d_kwargs={dict(na2d_kwargs or {})!r}: only dilation 1 is supported"
            )
        self.num_heads, self.head_dim = num_heads, _head_dim(hidden_size, num_heads)
        self.attn_kernel = attn_kernel
        self.scale = (na2d_kwargs or {}).get("scale")
        self.mask_token = nn.Parameter(torch.zeros(1, 1, hidden_size)) if use_mask_token else None
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size, bias=qkv_bias)
        self.q_norm = _layer_norm(self.head_dim, norm_layer) if qk_norm else nn.Identity()
        self.k_norm = _layer_norm(self.head_dim, norm_layer) if qk_norm else nn.Identity()
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(
        self, x: torch.Tensor, latent_hw: tuple[int, int], rope: Rope | None = None
    ) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = _split_heads(self.qkv(x), self.num_heads)
        q, k = self.q_norm(q), self.k_norm(k)
        # NATTEN's layout (B, h, w, heads, D)
        q, k, v = (t.transpose(1, 2).unflatten(1, latent_hw) for t in (q, k, v))
        if rope is not None:  # PhysicsNeMo's natten2d_rope: rotate q and k by position
            per_head = (rope[0][:, :, None], rope[1][:, :, None])
            q, k = rotate(q, per_head), rotate(k, per_head)
        out = neighborhood_attention_2d(q, k, v, self.attn_kernel, scale=self.scale)
        return self.proj(out.reshape(b, n, c))


def _layer_norm(dim: int, backend: str, eps: float = 1e-6) -> nn.LayerNorm:
    """PhysicsNeMo's ``get_layer_norm`` without affine weights (apex's fused norm computes
    the same function, so ``"apex"`` checkpoints run on torch's)."""
    if backend not in ("torch", "apex"):
        raise ValueError(f"layernorm_backend={backend!r} is invalid; expected 'torch' or 'apex'")
    return nn.LayerNorm(dim, elementwise_affine=False, eps=eps)


def _attention(
    backend: str, hidden_size: int, num_heads: int, layernorm: str, **options: Any
) -> nn.Module:
    if backend == "timm":
        return FullSelfAttention(hidden_size, num_heads, **options)
    if backend in ("natten2d", "natten2d_rope"):
        return NeighborhoodSelfAttention(
            hidden_size, num_heads, **{"norm_layer": layernorm, **options}
        )
    raise ValueError(
        f"attention_backend={backend!r} is not supported; expected one of {list(ATTENTION_BACKENDS)}"
    )


class _Mlp(nn.Module):
    """PhysicsNeMo's ``Mlp``: its layers in ``layers``."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class _PatchEmbed(nn.Module):
    """PhysicsNeMo's ``PatchEmbed2D`` without padding: a strided convolution ``proj``."""

    def __init__(self, in_channels: int, hidden_size: int, patch_size: tuple[int, int]) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, hidden_size, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class DiTBlock(nn.Module):
    """A transformer block with adaLN-Zero modulation by the conditioning embedding."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        attention_backend: str = "timm",
        layernorm_backend: str = "torch",
        norm_eps: float = 1e-6,
        mlp_ratio: float = 4.0,
        intermediate_dropout: bool = False,
        mlp_drop_rate: float = 0.0,
        final_mlp_dropout: bool = True,
        condition_embed_dim: int | None = None,
        **attn_kwargs: Any,
    ) -> None:
        super().__init__()
        self.attention = _attention(
            attention_backend, hidden_size, num_heads, layernorm_backend, **attn_kwargs
        )
        self.pre_attention_norm = _layer_norm(hidden_size, layernorm_backend, norm_eps)
        self.pre_mlp_norm = _layer_norm(hidden_size, layernorm_backend, norm_eps)
        hidden = int(hidden_size * mlp_ratio)
        layers: list[nn.Module] = [nn.Linear(hidden_size, hidden), nn.GELU(approximate="tanh")]
        layers += [nn.Dropout(mlp_drop_rate)] if mlp_drop_rate else []
        layers += [nn.Linear(hidden, hidden_size)]
        layers += [nn.Dropout(mlp_drop_rate)] if mlp_drop_rate and final_mlp_dropout else []
        self.linear = _Mlp(layers)
        width = hidden_size if condition_embed_dim is None else condition_embed_dim
        self.adaptive_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * hidden_size))

    def forward(
        self, x: torch.Tensor, c: torch.Tensor, latent_hw: tuple[int, int], rope: Rope | None = None
    ) -> torch.Tensor:
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.adaptive_modulation(c).chunk(
            6, dim=1
        )
        attended = self.attention(
            modulate(self.pre_attention_norm(x), scale_a, shift_a),
            latent_hw=latent_hw,
            **({"rope": rope} if rope is not None else {}),
        )
        x = torch.addcmul(x, gate_a.unsqueeze(1), attended)
        mlp = self.linear(modulate(self.pre_mlp_norm(x), scale_m, shift_m))
        return torch.addcmul(x, gate_m.unsqueeze(1), mlp)


class PatchTokenizer(nn.Module):
    """Non-overlapping patches → tokens, plus a learnable position embedding
    (PhysicsNeMo's ``PatchEmbed2DTokenizer``)."""

    def __init__(
        self,
        input_size: tuple[int, int],
        patch_size: tuple[int, int],
        in_channels: int,
        hidden_size: int,
        pos_embed: str = "learnable",
    ) -> None:
        super().__init__()
        self.x_embedder = _PatchEmbed(in_channels, hidden_size, patch_size)
        tokens = math.prod(token_grid(input_size, patch_size))
        learnable = pos_embed == "learnable"
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, hidden_size)) if learnable else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.x_embedder(x).flatten(2).transpose(1, 2)
        return tokens if self.pos_embed is None else tokens + self.pos_embed


class _ProjLayer(nn.Module):
    def __init__(self, hidden_size: int, emb_channels: int, layernorm_backend: str) -> None:
        super().__init__()
        self.proj_layer_norm = _layer_norm(hidden_size, layernorm_backend)
        self.output_projection = nn.Linear(hidden_size, emb_channels)
        self.adaptive_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaptive_modulation(c).chunk(2, dim=1)
        return self.output_projection(modulate(self.proj_layer_norm(x), scale, shift))


class ProjectionDetokenizer(nn.Module):
    """Tokens → a modulated linear projection to each patch's pixels, reassembled
    (PhysicsNeMo's ``ProjReshape2DDetokenizer``)."""

    def __init__(
        self,
        input_size: tuple[int, int],
        patch_size: tuple[int, int],
        out_channels: int,
        hidden_size: int,
        layernorm_backend: str = "torch",
    ) -> None:
        super().__init__()
        self.patch_size, self.out_channels = patch_size, out_channels
        self.grid = token_grid(input_size, patch_size)
        self.proj_layer = _ProjLayer(
            hidden_size, patch_size[0] * patch_size[1] * out_channels, layernorm_backend
        )

    def forward(self, tokens: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = self.proj_layer(tokens, c)
        (h, w), (p, q) = self.grid, self.patch_size
        x = x.reshape(x.shape[0], h, w, p, q, self.out_channels)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], self.out_channels, h * p, w * q)


class ConvDetokenizer(nn.Module):
    """:class:`ProjectionDetokenizer`'s image plus a residual convolution head
    (PhysicsNeMo's ``ConvDetokenizer``)."""

    def __init__(
        self,
        input_size: tuple[int, int],
        patch_size: tuple[int, int],
        out_channels: int,
        hidden_size: int,
        layernorm_backend: str = "torch",
        conv_layers: int = 2,
        conv_hidden: int = 64,
        conv_kernel: int = 3,
    ) -> None:
        super().__init__()
        if conv_layers < 1:
            raise ValueError(f"conv_layers={conv_layers!r} is invalid; expected at least 1")
        self.proj = ProjectionDetokenizer(
            input_size, patch_size, out_channels, hidden_size, layernorm_backend
        )
        channels = [out_channels, *[conv_hidden] * (conv_layers - 1), out_channels]
        layers: list[nn.Module] = []
        for i in range(conv_layers):
            layers.append(
                nn.Conv2d(channels[i], channels[i + 1], conv_kernel, padding=conv_kernel // 2)
            )
            layers += [nn.GELU()] if i < conv_layers - 1 else []
        self.conv_head = nn.Sequential(*layers)

    def forward(self, tokens: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        image = self.proj(tokens, c)
        return image + self.conv_head(image)


class _LearnedTimestep(PositionalEmbedding):
    """Sinusoidal embedding of the time followed by a two-layer MLP (PhysicsNeMo's
    ``PositionalEmbedding(learnable=True)``)."""

    def __init__(
        self,
        num_channels: int,
        max_positions: int = 10000,
        endpoint: bool = False,
        freq_embed_dim: int | None = None,
        mlp_hidden_dim: int | None = None,
        embed_fn: str = "cos_sin",
    ) -> None:
        if embed_fn not in ("cos_sin", "np_sin_cos"):
            raise ValueError(
                f"embed_fn={embed_fn!r} is invalid; expected 'cos_sin' or 'np_sin_cos'"
            )
        freq = freq_embed_dim or num_channels
        super().__init__(freq, max_positions, endpoint, embed_fn == "np_sin_cos")
        hidden = mlp_hidden_dim or 2 * num_channels
        self.mlp = nn.Sequential(
            nn.Linear(freq, hidden), nn.SiLU(), nn.Linear(hidden, num_channels)
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(super().forward(t))


class DiTConditionEmbedder(nn.Module):
    """Time embedding plus a bias-free linear map of the scalar conditions."""

    output_dim: int

    def __init__(self, hidden_size: int, condition_dim: int = 0, **timestep: Any) -> None:
        super().__init__()
        self.output_dim = hidden_size
        self.t_embedder = _LearnedTimestep(hidden_size, **timestep)
        self.cond_embedder = (
            nn.Linear(condition_dim, hidden_size, bias=False) if condition_dim else None
        )

    def forward(self, t: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        c = self.t_embedder(t)
        if self.cond_embedder is not None and condition is not None:
            c = c + self.cond_embedder(condition)
        return c


class EDMConditionEmbedder(nn.Module):
    """EDM's noise-level mapping: ``[sin, cos]`` embedding, plus the scaled conditions,
    through two linear layers."""

    output_dim: int

    def __init__(
        self,
        emb_channels: int,
        noise_channels: int,
        condition_dim: int = 0,
        condition_dropout: float = 0.0,
        legacy_condition_bias: bool = False,
        max_positions: int = 10000,
        **_: Any,
    ) -> None:
        super().__init__()
        self.output_dim = emb_channels
        self.map_noise = PositionalEmbedding(noise_channels, max_positions, True, True)
        with_map = condition_dim > 0 or legacy_condition_bias
        self.map_condition = nn.Linear(condition_dim, noise_channels) if with_map else None
        self.map_layer0 = nn.Linear(noise_channels, emb_channels)
        self.map_layer1 = nn.Linear(emb_channels, emb_channels)

    def forward(self, t: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.map_noise(t)
        if self.map_condition is not None and condition is not None:
            emb = emb + self.map_condition(condition * math.sqrt(self.map_condition.in_features))
        return self.map_layer1(F.silu(self.map_layer0(emb)))
