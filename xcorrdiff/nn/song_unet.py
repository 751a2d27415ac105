"""SongUNet (DDPM++ U-Net) and its positional-grid variant, as CorrDiff uses them.

State_dict-compatible with PhysicsNeMo 2.2.2's ``SongUNet`` and ``SongUNetPosEmbd``
(``physicsnemo/models/diffusion_unets/song_unet.py``): same module tree
(``enc.<R>x<R>_{conv,down,block<i>}``, ``dec.<R>x<R>_{in0,in1,up,block<i>,aux_norm,aux_conv}``,
``map_noise``, ``map_layer{0,1}``, ``pos_embd``), same arithmetic.

References
----------
Song, Y. et al. (2021). Score-based generative modeling through stochastic differential
equations. ICLR.
Karras, T. et al. (2022). Elucidating the design space of diffusion-based generative models.
Mardani, M. et al. (2025). Residual corrective diffusion modeling for km-scale atmospheric
downscaling. Communications Earth & Environment 6, 124.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch.nn.functional import silu
from torch.utils.checkpoint import checkpoint

from .layers import (
    Conv2d,
    FourierEmbedding,
    Linear,
    PositionalEmbedding,
    UNetBlock,
    make_group_norm,
)

__all__ = ["SongUNet", "json_config"]

EmbeddingType = Literal["positional", "fourier", "zero"]
GridType = Literal["sinusoidal", "sinusoidal_octave", "learnable", "linear", "none"]


def json_config(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor arguments as a JSON-serialisable dict.

    Drops ``self``/``__class__``, flattens a ``model_kwargs`` mapping into the top level
    (as PhysicsNeMo's ``args.json`` does) and turns tuples into lists.

    Parameters
    ----------
    arguments : mapping
        Typically ``locals()`` at the top of an ``__init__``.

    Returns
    -------
    dict
        Keyword arguments that rebuild the module: ``type(net)(**net.config)``.
    """

    def plain(value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, np.generic):
            return value.item()
        return value

    out = {
        k: plain(v) for k, v in arguments.items() if k not in ("self", "__class__", "model_kwargs")
    }
    out.update(plain(dict(arguments.get("model_kwargs", {}))))
    return out


def _resolution(img_resolution: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(img_resolution, int):
        return img_resolution, img_resolution
    shape = tuple(int(v) for v in img_resolution)
    if len(shape) != 2:
        raise ValueError(
            f"img_resolution {img_resolution!r} must be an int or a (height, width) pair"
        )
    return shape[0], shape[1]


_INIT: dict[str, Any] = {"init_mode": "xavier_uniform"}
_INIT_ZERO: dict[str, Any] = {"init_mode": "xavier_uniform", "init_weight": 1e-5}
_INIT_ATTN: dict[str, Any] = {"init_mode": "xavier_uniform", "init_weight": math.sqrt(0.2)}


def _check_architecture(
    embedding_type: str, encoder_type: str, decoder_type: str, channel_mult: Sequence[int]
) -> None:
    if embedding_type not in ("positional", "fourier", "zero"):
        raise ValueError(
            f"embedding_type {embedding_type!r} is not supported; expected 'positional', 'fourier' or 'zero'"
        )
    for name, value in (("encoder_type", encoder_type), ("decoder_type", decoder_type)):
        if value != "standard":
            raise ValueError(
                f"{name} {value!r} is not supported; xcorrdiff implements the 'standard' "
                "DDPM++ encoder/decoder that CorrDiff uses"
            )
    if len(channel_mult) < 1:
        raise ValueError(f"channel_mult {channel_mult!r} must have at least one level")


def _block_kwargs(
    emb_channels: int, dropout: float, resample_filter: Sequence[int], use_apex_gn: bool, act: str
) -> dict[str, Any]:
    """The keyword arguments every UNetBlock of a SongUNet shares (DDPM++)."""
    return {
        "emb_channels": emb_channels,
        "num_heads": 1,
        "dropout": dropout,
        "skip_scale": 0.7071067811865476,  # 1 / sqrt(2)
        "eps": 1e-6,
        "resample_filter": resample_filter,
        "resample_proj": True,
        "adaptive_scale": False,
        "init": _INIT,
        "init_zero": _INIT_ZERO,
        "init_attn": _INIT_ATTN,
        "use_apex_gn": use_apex_gn,
        "act": act,
    }


class SongUNet(torch.nn.Module):
    r"""DDPM++ U-Net backbone of CorrDiff's regression and diffusion networks.

    Encoder levels ``i = 0 .. len(channel_mult) - 1`` work at resolution ``H / 2**i``
    with ``model_channels * channel_mult[i]`` channels and ``num_blocks`` residual
    :class:`~xcorrdiff.nn.layers.UNetBlock` s each (self-attention where the level's
    resolution ``img_resolution[0] >> i`` is in ``attn_resolutions``); the decoder
    mirrors it with skip connections and ``num_blocks + 1`` blocks per level, plus two
    bottleneck blocks (the first with attention when ``bottleneck_attention``).
    Conditioning on the noise level goes through an embedding added in every block.

    Parameters
    ----------
    img_resolution : int or (int, int)
        Image height and width ``(H, W)`` used to build the network (block names use
        ``H``). Other input sizes work if divisible by ``2 ** (len(channel_mult) - 1)``.
    in_channels : int
        Channels of the input ``x`` (latent state plus conditioning images).
    out_channels : int
        Channels of the output.
    label_dim : int, default 0
        Size of vector ``class_labels`` conditioning (0: none).
    augment_dim : int, default 0
        Size of ``augment_labels`` conditioning (0: none).
    model_channels : int, default 128
        Base channel count.
    channel_mult : sequence of int, default (1, 2, 2, 2)
        Channel multiplier per level; its length is the number of levels.
    channel_mult_emb : int, default 4
        Embedding size is ``model_channels * channel_mult_emb``.
    num_blocks : int, default 4
        Residual blocks per encoder level.
    attn_resolutions : sequence of int, default (16,)
        Resolutions (of ``H``) with self-attention.
    dropout : float, default 0.10
        Dropout probability in the blocks.
    label_dropout : float, default 0.0
        Dropout of ``class_labels`` during training.
    embedding_type : {"positional", "fourier", "zero"}, default "positional"
        Noise-level embedding: sinusoidal (DDPM++), random Fourier (NCSN++), or none.
    channel_mult_noise : int, default 1
        Noise embedding size is ``model_channels * channel_mult_noise``.
    encoder_type, decoder_type : {"standard"}
        Only the DDPM++ "standard" encoder and decoder (as in CorrDiff) are implemented.
    resample_filter : sequence of int, default (1, 1)
        FIR taps for down/upsampling.
    checkpoint_level : int, default 0
        Gradient checkpointing of blocks whose resolution exceeds
        ``floor(sqrt(H * W)) >> checkpoint_level`` (0: off).
    additive_pos_embed : bool, default False
        Add a learnable ``(1, model_channels, H, W)`` map after the first convolution.
    bottleneck_attention : bool, default True
        Self-attention in the first bottleneck block.
    use_apex_gn : bool, default False
        NVIDIA apex fused group norm (channels-last CUDA); falls back with a warning.
    act : str, default "silu"
        Activation in the blocks.
    profile_mode, amp_mode : bool, default False
        Accepted for PhysicsNeMo checkpoint compatibility; they change nothing here
        (weights are always cast to the input dtype).

    Attributes
    ----------
    config : dict
        JSON-serialisable constructor arguments: ``SongUNet(**net.config)`` rebuilds it.
    channels_last : bool
        Run in channels-last (NHWC) memory layout end to end: the input is converted on
        entry and every layer keeps the layout (default False; set it with
        :func:`xcorrdiff.nn.compile.set_channels_last`, which also converts the weights).
        Not a constructor argument, so checkpoints and ``config`` are unaffected.

    Examples
    --------
    >>> net = SongUNet(img_resolution=16, in_channels=3, out_channels=2, model_channels=16,
    ...                channel_mult=[1, 2], attn_resolutions=[8], num_blocks=1)
    >>> net(torch.zeros(1, 3, 16, 16), torch.zeros(1)).shape
    torch.Size([1, 2, 16, 16])
    """

    channels_last: bool = False

    def __init__(
        self,
        img_resolution: int | Sequence[int],
        in_channels: int,
        out_channels: int,
        label_dim: int = 0,
        augment_dim: int = 0,
        model_channels: int = 128,
        channel_mult: Sequence[int] = (1, 2, 2, 2),
        channel_mult_emb: int = 4,
        num_blocks: int = 4,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.10,
        label_dropout: float = 0.0,
        embedding_type: EmbeddingType = "positional",
        channel_mult_noise: int = 1,
        encoder_type: Literal["standard"] = "standard",
        decoder_type: Literal["standard"] = "standard",
        resample_filter: Sequence[int] = (1, 1),
        checkpoint_level: int = 0,
        additive_pos_embed: bool = False,
        bottleneck_attention: bool = True,
        use_apex_gn: bool = False,
        act: str = "silu",
        profile_mode: bool = False,
        amp_mode: bool = False,
    ) -> None:
        config = json_config(locals())
        _check_architecture(embedding_type, encoder_type, decoder_type, channel_mult)
        super().__init__()
        self.config = config
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.label_dim = label_dim
        self.augment_dim = augment_dim
        self.label_dropout = label_dropout
        self.embedding_type = embedding_type
        self.use_apex_gn = use_apex_gn
        self.img_resolution = img_resolution
        self.img_shape_y, self.img_shape_x = _resolution(img_resolution)
        self.num_levels = len(channel_mult)
        self.input_shape_mult = 2 ** (self.num_levels - 1)
        self.checkpoint_threshold = (
            math.floor(math.sqrt(self.img_shape_x * self.img_shape_y)) >> checkpoint_level
        ) + 1
        self.emb_channels = model_channels * channel_mult_emb
        block_kwargs = _block_kwargs(self.emb_channels, dropout, resample_filter, use_apex_gn, act)
        # Modules are built in PhysicsNeMo's order, so a seed gives PhysicsNeMo's weights.
        self.additive_pos_embed = additive_pos_embed
        if additive_pos_embed:
            self.spatial_emb = torch.nn.Parameter(
                torch.randn(1, model_channels, self.img_shape_y, self.img_shape_x)
            )
            torch.nn.init.trunc_normal_(self.spatial_emb, std=0.02)
        self._build_embedding(model_channels * channel_mult_noise, embedding_type)
        cout, skips = self._build_encoder(
            model_channels, channel_mult, num_blocks, attn_resolutions, block_kwargs
        )
        self._build_decoder(
            cout, skips, model_channels, channel_mult, num_blocks, attn_resolutions,
            bottleneck_attention, block_kwargs,
        )  # fmt: skip

    def _build_embedding(self, noise_channels: int, embedding_type: str) -> None:
        """Mapping of the noise level (and labels) to the embedding."""
        init = _INIT
        emb_channels = self.emb_channels
        self.map_noise: torch.nn.Module | None = None
        self.map_label: Linear | None = None
        self.map_augment: Linear | None = None
        if embedding_type != "zero":
            self.map_noise = (
                PositionalEmbedding(num_channels=noise_channels, endpoint=True)
                if embedding_type == "positional"
                else FourierEmbedding(num_channels=noise_channels)
            )
            if self.label_dim:
                self.map_label = Linear(self.label_dim, noise_channels, **init)
            if self.augment_dim:
                self.map_augment = Linear(self.augment_dim, noise_channels, bias=False, **init)
            self.map_layer0 = Linear(noise_channels, emb_channels, **init)
            self.map_layer1 = Linear(emb_channels, emb_channels, **init)
        else:
            self.register_buffer("zero_emb", torch.zeros(1, emb_channels), persistent=False)
            self.zero_emb: torch.Tensor

    def _build_encoder(
        self,
        model_channels: int,
        channel_mult: Sequence[int],
        num_blocks: int,
        attn_resolutions: Sequence[int],
        block_kwargs: dict[str, Any],
    ) -> tuple[int, list[int]]:
        """The encoder; returns its output channels and the skip connections' channels."""
        self.enc = torch.nn.ModuleDict()
        cout = self.in_channels
        for level, mult in enumerate(channel_mult):
            res = self.img_shape_y >> level
            if level == 0:
                cin, cout = cout, model_channels
                self.enc[f"{res}x{res}_conv"] = Conv2d(cin, cout, kernel=3, **_INIT)
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(cout, cout, down=True, **block_kwargs)
            for idx in range(num_blocks):
                cin, cout = cout, model_channels * mult
                self.enc[f"{res}x{res}_block{idx}"] = UNetBlock(
                    cin, cout, attention=res in attn_resolutions, **block_kwargs
                )
        skips = [
            block.out_channels
            for block in self.enc.values()
            if isinstance(block, (Conv2d, UNetBlock))
        ]
        return cout, skips

    def _build_decoder(
        self,
        cout: int,
        skips: list[int],
        model_channels: int,
        channel_mult: Sequence[int],
        num_blocks: int,
        attn_resolutions: Sequence[int],
        bottleneck_attention: bool,
        block_kwargs: dict[str, Any],
    ) -> None:
        """The decoder, consuming ``skips`` from the end."""
        self.dec = torch.nn.ModuleDict()
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = self.img_shape_y >> level
            if level == len(channel_mult) - 1:
                self.dec[f"{res}x{res}_in0"] = UNetBlock(
                    cout, cout, attention=bottleneck_attention, **block_kwargs
                )
                self.dec[f"{res}x{res}_in1"] = UNetBlock(cout, cout, **block_kwargs)
            else:
                self.dec[f"{res}x{res}_up"] = UNetBlock(cout, cout, up=True, **block_kwargs)
            for idx in range(num_blocks + 1):
                cin, cout = cout + skips.pop(), model_channels * mult
                attn = idx == num_blocks and res in attn_resolutions
                self.dec[f"{res}x{res}_block{idx}"] = UNetBlock(
                    cin, cout, attention=attn, **block_kwargs
                )
            if level == 0:
                self.dec[f"{res}x{res}_aux_norm"] = make_group_norm(
                    cout, eps=1e-6, use_apex_gn=block_kwargs["use_apex_gn"]
                )
                self.dec[f"{res}x{res}_aux_conv"] = Conv2d(
                    cout, self.out_channels, kernel=3, **_INIT_ZERO
                )

    def _check_input(self, x: torch.Tensor, noise_labels: torch.Tensor) -> None:
        name = type(self).__name__
        if x.ndim != 4:
            raise ValueError(
                f"{name} expects x of shape (batch, channel, y, x), got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{name} expects x with {self.in_channels} channels, got {x.shape[1]} (shape {tuple(x.shape)})"
            )
        self._check_spatial(tuple(x.shape[-2:]))
        if noise_labels.ndim != 1 or noise_labels.shape[0] not in (x.shape[0], 1):
            raise ValueError(
                f"noise_labels must have shape ({x.shape[0]},) or (1,), got {tuple(noise_labels.shape)}"
            )

    def _check_spatial(self, shape: tuple[int, ...]) -> None:
        m = self.input_shape_mult
        bad = [d for d in shape if d % m != 0 or d == 0]
        if bad:
            hints = ", ".join(f"{d} → {max(m, d // m * m)} or {(d // m + 1) * m}" for d in bad)
            raise ValueError(
                f"{type(self).__name__} with {self.num_levels} levels needs a spatial shape divisible "
                f"by 2**{self.num_levels - 1} = {m}, got {shape}; crop or pad the image ({hints})"
            )

    def _embedding(
        self,
        x: torch.Tensor,
        noise_labels: torch.Tensor,
        class_labels: torch.Tensor | None,
        augment_labels: torch.Tensor | None,
    ) -> torch.Tensor:
        if self.map_noise is None:
            return self.zero_emb.to(x.dtype).expand(noise_labels.shape[0], -1)
        emb: torch.Tensor = self.map_noise(noise_labels)
        half = emb.shape[1] // 2
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=1)  # [cos, sin] → [sin, cos]
        if self.map_label is not None:
            if class_labels is None or class_labels.shape != (x.shape[0], self.label_dim):
                got = None if class_labels is None else tuple(class_labels.shape)
                raise ValueError(
                    f"class_labels must have shape ({x.shape[0]}, {self.label_dim}), got {got}"
                )
            labels = class_labels.to(emb.dtype)
            if self.training and self.label_dropout:
                keep = torch.rand([x.shape[0], 1], device=x.device) >= self.label_dropout
                labels = labels * keep.to(labels.dtype)
            emb = emb + self.map_label(labels * math.sqrt(self.map_label.in_features))
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels.to(emb.dtype))
        emb = silu(self.map_layer0(emb))
        return silu(self.map_layer1(emb))

    def _run_block(
        self, block: torch.nn.Module, x: torch.Tensor, emb: torch.Tensor, threshold: float
    ) -> torch.Tensor:
        if math.floor(math.sqrt(x.shape[-2] * x.shape[-1])) > threshold:
            out: torch.Tensor = checkpoint(block, x, emb, use_reentrant=False)
            return out
        out = block(x, emb)
        return out

    def forward(
        self,
        x: torch.Tensor,
        noise_labels: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        augment_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run the U-Net.

        Parameters
        ----------
        x : torch.Tensor
            Input ``(batch, in_channels, y, x)``; ``y`` and ``x`` divisible by
            ``2 ** (len(channel_mult) - 1)``. Any memory format.
        noise_labels : torch.Tensor
            Noise conditioning ``(batch,)`` or ``(1,)`` (e.g. ``c_noise = ln(sigma) / 4``).
        class_labels : torch.Tensor, optional
            ``(batch, label_dim)``; required when ``label_dim > 0``.
        augment_labels : torch.Tensor, optional
            ``(batch, augment_dim)``.

        Returns
        -------
        torch.Tensor
            ``(batch, out_channels, y, x)``.

        Raises
        ------
        ValueError
            On a wrong rank, channel count, spatial size or label shape.
        """
        self._check_input(x, noise_labels)
        if self.channels_last or (self.use_apex_gn and x.is_cuda):
            x = x.contiguous(memory_format=torch.channels_last)
        emb = self._embedding(x, noise_labels, class_labels, augment_labels)

        # Encoder: keep every level's output for the skip connections.
        skips = []
        for name, block in self.enc.items():
            if name.endswith("_conv"):
                x = block(x)
                if self.additive_pos_embed:
                    x = x + self.spatial_emb.to(dtype=x.dtype)
            else:
                x = self._run_block(block, x, emb, self.checkpoint_threshold)
            skips.append(x)

        # Decoder: upsample, concatenating the matching skip before each block.
        out = x
        for name, block in self.dec.items():
            if name.endswith("_aux_norm"):
                out = block(x)
            elif name.endswith("_aux_conv"):
                out = block(silu(out))
            else:
                if x.shape[1] != block.in_channels:
                    x = torch.cat([x, skips.pop()], dim=1)
                threshold = (
                    self.checkpoint_threshold / 2
                    if name.endswith("_up")
                    else self.checkpoint_threshold
                )
                x = self._run_block(block, x, emb, threshold)
        return out
