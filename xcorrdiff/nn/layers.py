"""Building blocks of the CorrDiff U-Net, state_dict-compatible with PhysicsNeMo 2.2.2.

Every module here keeps the parameter and buffer names of its PhysicsNeMo counterpart
(``physicsnemo.nn.module``: ``Conv2d``, ``Linear``, ``GroupNorm``, ``UNetAttention``,
``UNetBlock``, ``PositionalEmbedding``, ``FourierEmbedding``), so a PhysicsNeMo
``state_dict`` loads into ours with ``strict=True``. Weights are cast to the input dtype
inside ``forward``, so a module kept in float32 runs on float16/bfloat16 inputs.

References
----------
Karras, T., Aittala, M., Aila, T. and Laine, S. (2022). Elucidating the design space of
diffusion-based generative models. NeurIPS 35.
Song, Y. et al. (2021). Score-based generative modeling through stochastic differential
equations. ICLR.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch.nn import functional as F

from .group_norm import ACTIVATIONS, make_group_norm

__all__ = [
    "Conv2d",
    "FourierEmbedding",
    "Linear",
    "PositionalEmbedding",
    "UNetAttention",
    "UNetBlock",
    "weight_init",
]

InitMode = Literal["xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"]


def weight_init(shape: Sequence[int], mode: InitMode, fan_in: int, fan_out: int) -> torch.Tensor:
    """Random tensor for weight initialisation, as in EDM's ``weight_init``.

    Parameters
    ----------
    shape : sequence of int
        Shape of the tensor.
    mode : {"xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"}
        Initialisation scheme.
    fan_in, fan_out : int
        Fan-in and fan-out of the layer.

    Returns
    -------
    torch.Tensor
        Tensor of shape ``shape`` on the current default device (uninitialised on the
        ``meta`` device, where values do not exist).

    Raises
    ------
    ValueError
        If ``mode`` is not one of the four schemes.
    """
    if torch.get_default_device().type == "meta":  # shapes only (e.g. counting parameters)
        if mode not in ("xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"):
            raise ValueError(f"init_mode {mode!r} is not supported")
        return torch.empty(*shape)
    if mode == "xavier_uniform":
        return math.sqrt(6 / (fan_in + fan_out)) * (torch.rand(*shape) * 2 - 1)
    if mode == "xavier_normal":
        return math.sqrt(2 / (fan_in + fan_out)) * torch.randn(*shape)
    if mode == "kaiming_uniform":
        return math.sqrt(3 / fan_in) * (torch.rand(*shape) * 2 - 1)
    if mode == "kaiming_normal":
        return math.sqrt(1 / fan_in) * torch.randn(*shape)
    raise ValueError(
        f"init_mode {mode!r} is not supported; expected one of "
        "'xavier_uniform', 'xavier_normal', 'kaiming_uniform', 'kaiming_normal'"
    )


class Conv2d(torch.nn.Module):
    """2-D convolution with optional 2x up- or down-sampling by a separable FIR filter.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and of the output.
    kernel : int
        Kernel size; 0 means no convolution (resampling only, no weight, no bias).
    bias : bool, default True
        Learn an additive bias.
    up, down : bool, default False
        Upsample (transposed depthwise filter, stride 2) or downsample (depthwise
        filter, stride 2) before the convolution.
    resample_filter : sequence of int, default (1, 1)
        1-D filter taps; the 2-D filter is their normalised outer product.
    init_mode : str, default "kaiming_normal"
        Weight initialisation, see :func:`weight_init`.
    init_weight, init_bias : float
        Scale factors applied to the initial weight and bias.

    Notes
    -----
    Input ``(batch, in_channels, y, x)`` → output ``(batch, out_channels, y', x')`` with
    ``y' = 2y`` when ``up``, ``y' = y // 2`` when ``down``, else ``y' = y``.
    The filter is a buffer named ``resample_filter`` (``None`` when neither up nor down).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        bias: bool = True,
        up: bool = False,
        down: bool = False,
        resample_filter: Sequence[int] = (1, 1),
        init_mode: InitMode = "kaiming_normal",
        init_weight: float = 1.0,
        init_bias: float = 0.0,
    ) -> None:
        if up and down:
            raise ValueError("Conv2d got up=True and down=True; expected at most one of them")
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.up = up
        self.down = down
        fans = {"fan_in": in_channels * kernel * kernel, "fan_out": out_channels * kernel * kernel}
        self.weight = (
            torch.nn.Parameter(
                weight_init([out_channels, in_channels, kernel, kernel], init_mode, **fans)
                * init_weight
            )
            if kernel
            else None
        )
        self.bias = (
            torch.nn.Parameter(weight_init([out_channels], init_mode, **fans) * init_bias)
            if kernel and bias
            else None
        )
        f = torch.as_tensor(list(resample_filter), dtype=torch.float32)
        f = f.ger(f).unsqueeze(0).unsqueeze(1) / f.sum().square()
        self.register_buffer("resample_filter", f if up or down else None)
        self.resample_filter: torch.Tensor | None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply resampling then convolution to ``x`` of shape ``(batch, in_channels, y, x)``."""
        w = self.weight.to(x.dtype) if self.weight is not None else None
        b = self.bias.to(x.dtype) if self.bias is not None else None
        f = self.resample_filter
        if f is not None:
            f = f.to(x.dtype)
            f_pad = (f.shape[-1] - 1) // 2
            if self.up:
                x = F.conv_transpose2d(
                    x,
                    f.mul(4).tile([self.in_channels, 1, 1, 1]),
                    groups=self.in_channels,
                    stride=2,
                    padding=f_pad,
                )
            if self.down:
                x = F.conv2d(
                    x,
                    f.tile([self.in_channels, 1, 1, 1]),
                    groups=self.in_channels,
                    stride=2,
                    padding=f_pad,
                )
        if w is not None:
            x = F.conv2d(x, w, bias=b, padding=w.shape[-1] // 2)
        return x


class Linear(torch.nn.Module):
    """Fully connected layer with EDM-style initialisation.

    Parameters
    ----------
    in_features, out_features : int
        Sizes of the input and output vectors.
    bias : bool, default True
        Learn an additive bias.
    init_mode : str, default "kaiming_normal"
        Weight initialisation, see :func:`weight_init`.
    init_weight, init_bias : float
        Scale factors applied to the initial weight and bias.

    Notes
    -----
    Input ``(..., in_features)`` → output ``(..., out_features)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        init_mode: InitMode = "kaiming_normal",
        init_weight: float = 1.0,
        init_bias: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        fans = {"fan_in": in_features, "fan_out": out_features}
        self.weight = torch.nn.Parameter(
            weight_init([out_features, in_features], init_mode, **fans) * init_weight
        )
        self.bias = (
            torch.nn.Parameter(weight_init([out_features], init_mode, **fans) * init_bias)
            if bias
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x @ weight.T + bias`` for ``x`` of shape ``(..., in_features)``."""
        b = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.weight.to(x.dtype), b)


class PositionalEmbedding(torch.nn.Module):
    """Sinusoidal embedding of the noise level (DDPM++ / ADM "positional").

    Parameters
    ----------
    num_channels : int
        Embedding size (even).
    max_positions : int, default 10000
        Longest period.
    endpoint : bool, default False
        Include the last frequency ``1 / max_positions``.
    sin_first : bool, default False
        Order the output ``[sin, cos]`` (PhysicsNeMo's ``embed_fn="np_sin_cos"``).

    Notes
    -----
    Input ``(batch,)`` → output ``(batch, num_channels)`` ordered ``[cos, sin]``. The
    frequencies are a persistent buffer ``freqs`` (as in PhysicsNeMo 2.2.2).
    """

    def __init__(
        self,
        num_channels: int,
        max_positions: int = 10000,
        endpoint: bool = False,
        sin_first: bool = False,
    ) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.sin_first = sin_first
        half = num_channels // 2
        freqs = torch.arange(start=0, end=half, dtype=torch.float32)
        freqs = freqs / (half - (1 if endpoint else 0))
        freqs = (1 / max_positions) ** freqs
        self.register_buffer("freqs", freqs)
        self.freqs: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed ``x`` of shape ``(batch,)`` into ``(batch, num_channels)``."""
        x = torch.outer(x, self.freqs.to(x.dtype))
        return torch.cat([x.sin(), x.cos()] if self.sin_first else [x.cos(), x.sin()], dim=1)


class FourierEmbedding(torch.nn.Module):
    """Random Fourier feature embedding of the noise level (NCSN++ "fourier").

    Parameters
    ----------
    num_channels : int
        Embedding size (even).
    scale : float, default 16
        Standard deviation of the random frequencies.

    Notes
    -----
    Input ``(batch,)`` → output ``(batch, num_channels)`` ordered ``[cos, sin]``; the
    frequencies are a persistent buffer ``freqs`` of shape ``(num_channels // 2,)``.
    """

    def __init__(self, num_channels: int, scale: float = 16) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.randn(num_channels // 2) * scale)
        self.freqs: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed ``x`` of shape ``(batch,)`` into ``(batch, num_channels)``."""
        x = x.ger(2 * np.pi * self.freqs.to(x.dtype))
        return torch.cat([x.cos(), x.sin()], dim=1)


class UNetAttention(torch.nn.Module):
    """Self-attention over all pixels: GroupNorm → 1x1 qkv → SDPA → 1x1 proj, residual.

    Parameters
    ----------
    out_channels : int
        Channels ``C`` of input and output.
    num_heads : int
        Attention heads; must divide ``out_channels``.
    eps : float, default 1e-5
        Group-norm epsilon.
    init_zero, init_attn : dict
        Initialisation keyword arguments of the projection and of the qkv convolution.
    use_apex_gn : bool, default False
        See :func:`make_group_norm`.

    Notes
    -----
    Input and output ``(batch, C, y, x)``. The qkv channels are laid out
    ``(head, C // num_heads, 3)`` as in PhysicsNeMo, so checkpoints are interchangeable.
    Attention uses :func:`torch.nn.functional.scaled_dot_product_attention` with scale
    ``1 / sqrt(C // num_heads)``.
    """

    def __init__(
        self,
        out_channels: int,
        num_heads: int,
        eps: float = 1e-5,
        init_zero: dict[str, Any] | None = None,
        init_attn: dict[str, Any] | None = None,
        use_apex_gn: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(num_heads, int) or num_heads <= 0:
            raise ValueError(f"num_heads must be a positive integer, got {num_heads!r}")
        if out_channels % num_heads != 0:
            raise ValueError(
                f"out_channels {out_channels} is not divisible by num_heads {num_heads}"
            )
        self.num_heads = num_heads
        self.norm = make_group_norm(out_channels, eps=eps, use_apex_gn=use_apex_gn)
        self.qkv = Conv2d(out_channels, out_channels * 3, kernel=1, **(init_attn or {}))
        self.proj = Conv2d(
            out_channels,
            out_channels,
            kernel=1,
            **(init_zero if init_zero is not None else {"init_weight": 0}),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend over the ``y * x`` pixels of ``x`` of shape ``(batch, C, y, x)``."""
        batch, channels = x.shape[0], x.shape[1]
        head_dim = channels // self.num_heads
        qkv = self.qkv(self.norm(x)).reshape(batch, self.num_heads, head_dim, 3, -1)
        q, k, v = qkv.permute(3, 0, 1, 4, 2).unbind(0)  # each (batch, heads, pixels, head_dim)
        attn = F.scaled_dot_product_attention(q, k, v, scale=1 / math.sqrt(head_dim))
        if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            # Keep the NHWC layout: (batch, heads, pixels, head_dim) is already pixel-major.
            attn = attn.permute(0, 2, 1, 3).reshape(batch, *x.shape[2:], channels)
            attn = attn.permute(0, 3, 1, 2)
        else:
            attn = attn.transpose(-1, -2).reshape(x.shape)
        return self.proj(attn) + x


class UNetBlock(torch.nn.Module):
    """Residual U-Net block with optional 2x resampling and self-attention (DDPM++).

    ``x → act(GN(x)) → conv3x3 (+resample) → + emb → act(GN) → dropout → conv3x3``,
    plus a (resampled, projected) skip, scaled by ``skip_scale``; then optional attention.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of input and output.
    emb_channels : int
        Size of the conditioning embedding.
    up, down : bool, default False
        Upsample or downsample by 2.
    attention : bool, default False
        Append a :class:`UNetAttention` layer (named ``attn``).
    num_heads : int or None
        Attention heads; default ``out_channels // channels_per_head``.
    channels_per_head : int, default 64
        Used when ``num_heads`` is None.
    dropout : float, default 0
        Dropout probability before the second convolution.
    skip_scale : float, default 1
        Scale applied after each residual sum (``1/sqrt(2)`` in SongUNet).
    eps : float, default 1e-5
        Group-norm epsilon.
    resample_filter : sequence of int, default (1, 1)
        FIR taps for resampling.
    resample_proj : bool, default False
        Use a 1x1 convolution on a resampled skip even when channels agree.
    adaptive_scale : bool, default True
        Embedding as scale and shift (``True``) or as an additive bias (``False``).
    init, init_zero, init_attn : dict or None
        Initialisation keyword arguments.
    use_apex_gn : bool, default False
        See :func:`make_group_norm`.
    act : str, default "silu"
        Activation.

    Notes
    -----
    Input ``x`` ``(batch, in_channels, y, x)`` and ``emb`` ``(batch, emb_channels)`` →
    ``(batch, out_channels, y', x')``. Checkpoints that stored attention weights as
    ``norm2``/``qkv``/``proj`` on the block are renamed on import (see
    :func:`xcorrdiff.nn.physicsnemo.rename_legacy_keys`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_channels: int,
        up: bool = False,
        down: bool = False,
        attention: bool = False,
        num_heads: int | None = None,
        channels_per_head: int = 64,
        dropout: float = 0.0,
        skip_scale: float = 1.0,
        eps: float = 1e-5,
        resample_filter: Sequence[int] = (1, 1),
        resample_proj: bool = False,
        adaptive_scale: bool = True,
        init: dict[str, Any] | None = None,
        init_zero: dict[str, Any] | None = None,
        init_attn: dict[str, Any] | None = None,
        use_apex_gn: bool = False,
        act: str = "silu",
    ) -> None:
        super().__init__()
        init = init or {}
        init_zero = init_zero if init_zero is not None else {"init_weight": 0}
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.emb_channels = emb_channels
        self.num_heads = (
            0
            if not attention
            else (num_heads if num_heads is not None else out_channels // channels_per_head)
        )
        self.dropout = dropout
        self.skip_scale = skip_scale
        self.adaptive_scale = adaptive_scale
        self.act = act
        self.norm0 = make_group_norm(in_channels, eps=eps, act=act, use_apex_gn=use_apex_gn)
        self.conv0 = Conv2d(
            in_channels,
            out_channels,
            kernel=3,
            up=up,
            down=down,
            resample_filter=resample_filter,
            **init,
        )
        self.affine = Linear(emb_channels, out_channels * (2 if adaptive_scale else 1), **init)
        self.norm1 = make_group_norm(
            out_channels, eps=eps, act=None if adaptive_scale else act, use_apex_gn=use_apex_gn
        )
        self.conv1 = Conv2d(out_channels, out_channels, kernel=3, **init_zero)
        self.skip: Conv2d | None = None
        if out_channels != in_channels or up or down:
            kernel = 1 if resample_proj or out_channels != in_channels else 0
            self.skip = Conv2d(
                in_channels,
                out_channels,
                kernel=kernel,
                up=up,
                down=down,
                resample_filter=resample_filter,
                **init,
            )
        self.attn: UNetAttention | None = None
        if attention:
            self.attn = UNetAttention(
                out_channels=out_channels,
                num_heads=self.num_heads,
                eps=eps,
                init_zero=init_zero,
                init_attn=init_attn if init_attn is not None else init,
                use_apex_gn=use_apex_gn,
            )

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Apply the block to ``x`` ``(batch, in_channels, y, x)`` with ``emb`` ``(batch, emb_channels)``."""
        orig = x
        x = self.conv0(self.norm0(x))
        params = self.affine(emb).to(x.dtype).unsqueeze(2).unsqueeze(3)
        if self.adaptive_scale:
            scale, shift = params.chunk(chunks=2, dim=1)
            x = ACTIVATIONS[self.act](torch.addcmul(shift, self.norm1(x), scale + 1))
        else:
            x = self.norm1(x + params)
        x = self.conv1(F.dropout(x, p=self.dropout, training=self.training))
        x = x + (self.skip(orig) if self.skip is not None else orig)
        x = x * self.skip_scale
        if self.attn is not None:
            x = self.attn(x) * self.skip_scale
        return x
