"""SongUNetPosEmbd: the SongUNet with a positional grid concatenated to its input.

State_dict-compatible with PhysicsNeMo 2.2.2's ``SongUNetPosEmbd`` (``pos_embd``), with the
``embedding_selector`` that picks each patch's part of the whole-domain grid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch

from .song_unet import EmbeddingType, GridType, SongUNet, json_config

__all__ = ["SongUNetPosEmbd"]


class SongUNetPosEmbd(SongUNet):
    r"""SongUNet whose input is concatenated with a grid of spatial positional embeddings.

    The grid ``pos_embd`` has shape ``(N_grid_channels, H, W)`` over the *global* domain
    ``img_resolution``; a patch takes its slice through ``global_index`` or an
    ``embedding_selector`` (patch-based training and multi-diffusion sampling).

    Parameters
    ----------
    img_resolution : int or (int, int)
        Global domain ``(H, W)``; also the grid's shape.
    in_channels : int
        Channels of the U-Net input *including* the ``N_grid_channels`` grid channels.
    out_channels : int
        Output channels.
    gridtype : {"sinusoidal", "sinusoidal_octave", "learnable", "linear", "none"}
        ``"sinusoidal"`` (CorrDiff; with N = 4: ``sin``/``cos`` of ``linspace(0, 2π, W)``
        along x and of ``linspace(0, 2π, H)`` along y, a non-persistent buffer, as
        PhysicsNeMo's legacy formula), ``"sinusoidal_octave"`` (octave bands),
        ``"learnable"`` (a ``(N, H, W)`` parameter, ``randn`` initialised), ``"linear"``
        (2 channels on ``[-1, 1]``) or ``"none"`` (no grid, like ``N_grid_channels=0``).
    N_grid_channels : int, default 4
        Grid channels (0: no grid).
    lead_time_mode, lead_time_channels, lead_time_steps, prob_channels
        PhysicsNeMo's lead-time options, which belong to
        :class:`~xcorrdiff.nn.SongUNetPosLtEmbd`: ``lead_time_mode`` must be False and
        ``lead_time_channels`` unset here.
    **others
        As :class:`SongUNet`; defaults follow PhysicsNeMo's ``SongUNetPosEmbd``
        (CWA topology: ``channel_mult (1, 2, 2, 2, 2)``, ``attn_resolutions (28,)``,
        ``dropout 0.13``).

    Examples
    --------
    >>> net = SongUNetPosEmbd(img_resolution=16, in_channels=2 + 4, out_channels=2,
    ...                       model_channels=16, channel_mult=[1, 2], attn_resolutions=[8],
    ...                       num_blocks=1)
    >>> net(torch.zeros(1, 2, 16, 16), torch.zeros(1)).shape
    torch.Size([1, 2, 16, 16])
    >>> index = torch.stack(torch.meshgrid(torch.arange(8, 16), torch.arange(0, 8), indexing="ij"))
    >>> net(torch.zeros(1, 2, 8, 8), torch.zeros(1), global_index=index[None]).shape
    torch.Size([1, 2, 8, 8])
    """

    def __init__(
        self,
        img_resolution: int | Sequence[int],
        in_channels: int,
        out_channels: int,
        label_dim: int = 0,
        augment_dim: int = 0,
        model_channels: int = 128,
        channel_mult: Sequence[int] = (1, 2, 2, 2, 2),
        channel_mult_emb: int = 4,
        num_blocks: int = 4,
        attn_resolutions: Sequence[int] = (28,),
        dropout: float = 0.13,
        label_dropout: float = 0.0,
        embedding_type: EmbeddingType = "positional",
        channel_mult_noise: int = 1,
        encoder_type: Literal["standard"] = "standard",
        decoder_type: Literal["standard"] = "standard",
        resample_filter: Sequence[int] = (1, 1),
        gridtype: GridType = "sinusoidal",
        N_grid_channels: int = 4,
        checkpoint_level: int = 0,
        additive_pos_embed: bool = False,
        bottleneck_attention: bool = True,
        use_apex_gn: bool = False,
        act: str = "silu",
        profile_mode: bool = False,
        amp_mode: bool = False,
        lead_time_mode: bool = False,
        lead_time_channels: int | None = None,
        lead_time_steps: int = 9,
        prob_channels: Sequence[int] = (),
    ) -> None:
        config = json_config(locals())
        if lead_time_mode or lead_time_channels:
            raise ValueError(
                f"lead_time_mode={lead_time_mode!r}, lead_time_channels={lead_time_channels!r}: "
                "lead-time embeddings belong to SongUNetPosLtEmbd (model_type='SongUNetPosLtEmbd')"
            )
        if gridtype not in ("sinusoidal", "sinusoidal_octave", "learnable", "linear", "none"):
            raise ValueError(
                f"gridtype {gridtype!r} is not supported; expected 'sinusoidal', "
                "'sinusoidal_octave', 'learnable', 'linear' or 'none'"
            )
        super().__init__(
            img_resolution=img_resolution,
            in_channels=in_channels,
            out_channels=out_channels,
            label_dim=label_dim,
            augment_dim=augment_dim,
            model_channels=model_channels,
            channel_mult=channel_mult,
            channel_mult_emb=channel_mult_emb,
            num_blocks=num_blocks,
            attn_resolutions=attn_resolutions,
            dropout=dropout,
            label_dropout=label_dropout,
            embedding_type=embedding_type,
            channel_mult_noise=channel_mult_noise,
            encoder_type=encoder_type,
            decoder_type=decoder_type,
            resample_filter=resample_filter,
            checkpoint_level=checkpoint_level,
            additive_pos_embed=additive_pos_embed,
            bottleneck_attention=bottleneck_attention,
            use_apex_gn=use_apex_gn,
            act=act,
            profile_mode=profile_mode,
            amp_mode=amp_mode,
        )
        self.config = config
        self.gridtype = gridtype
        self.N_grid_channels = 0 if gridtype == "none" else N_grid_channels
        if self.N_grid_channels > in_channels:
            raise ValueError(
                f"in_channels {in_channels} must include the {self.N_grid_channels} grid channels"
            )
        self.pos_embd: torch.Tensor | None
        grid = self._positional_grid()
        if grid is None or gridtype == "learnable":
            self.pos_embd = grid
        else:
            self.register_buffer("pos_embd", grid, persistent=False)

    def _positional_grid(self) -> torch.Tensor | None:
        n, height, width = self.N_grid_channels, self.img_shape_y, self.img_shape_x
        if n == 0:
            return None
        if self.gridtype == "learnable":
            return torch.nn.Parameter(torch.randn(n, height, width))
        if self.gridtype == "linear":
            if n != 2:
                raise ValueError(f"gridtype 'linear' needs N_grid_channels=2, got {n}")
            gx, gy = np.meshgrid(np.linspace(-1, 1, width), np.linspace(-1, 1, height))
            return torch.from_numpy(np.stack((gx, gy), axis=0)).float()
        if n % 4 != 0:
            raise ValueError(
                f"gridtype {self.gridtype!r} needs N_grid_channels divisible by 4, got {n}"
            )
        if self.gridtype == "sinusoidal" and n == 4:
            sx, cx = (
                np.sin(np.linspace(0, 2 * np.pi, width)),
                np.cos(np.linspace(0, 2 * np.pi, width)),
            )
            sy, cy = (
                np.sin(np.linspace(0, 2 * np.pi, height)),
                np.cos(np.linspace(0, 2 * np.pi, height)),
            )
            gx1, gy1 = np.meshgrid(sx, sy)
            gx2, gy2 = np.meshgrid(cx, cy)
            return torch.from_numpy(np.stack((gx1, gy1, gx2, gy2), axis=0)).float()
        num_freq = n // 4
        if self.gridtype == "sinusoidal":
            # PhysicsNeMo's legacy bands (not exact octaves).
            freq_bands = np.power(2.0, np.linspace(0.0, num_freq, num=num_freq))
        else:
            freq_bands = np.power(2.0, np.arange(num_freq, dtype=np.float64))
        gx, gy = np.meshgrid(np.linspace(0, 2 * np.pi, width), np.linspace(0, 2 * np.pi, height))
        planes = [fn(g * freq) for freq in freq_bands for fn in (np.sin, np.cos) for g in (gx, gy)]
        return torch.from_numpy(np.stack(planes, axis=0)).float()

    def positional_embedding_indexing(
        self, x: torch.Tensor, global_index: torch.Tensor | None = None
    ) -> torch.Tensor:
        r"""Slice the positional grid for each patch in the batch.

        Parameters
        ----------
        x : torch.Tensor
            Input ``(P * B, C, h, w)``; batch element ``i`` is patch ``i % P``.
        global_index : torch.Tensor, optional
            Integer tensor ``(P, 2, h, w)``: the (row, column) of every patch pixel in the
            global grid. ``None`` takes the whole grid (then ``(h, w)`` must be ``(H, W)``).

        Returns
        -------
        torch.Tensor
            ``(P * B, N_grid_channels, h, w)`` in ``x``'s dtype.

        Raises
        ------
        ValueError
            If there is no grid, the shapes disagree, or an index is out of range.
        """
        if self.pos_embd is None:
            raise ValueError("this SongUNetPosEmbd has no positional grid (N_grid_channels=0)")
        pos_embd = self.pos_embd.to(x.dtype)
        if global_index is None:
            if tuple(x.shape[-2:]) != (self.img_shape_y, self.img_shape_x):
                raise ValueError(
                    f"x has spatial shape {tuple(x.shape[-2:])} but the positional grid is "
                    f"{(self.img_shape_y, self.img_shape_x)}; pass global_index (or embedding_selector) "
                    "to select each patch's part of the grid"
                )
            return pos_embd[None].expand(x.shape[0], -1, -1, -1)
        if global_index.ndim != 4 or global_index.shape[1] != 2:
            raise ValueError(
                f"global_index must have shape (patches, 2, h, w), got {tuple(global_index.shape)}"
            )
        num_patches, _, height, width = global_index.shape
        if tuple(x.shape[-2:]) != (height, width) or x.shape[0] % num_patches != 0:
            raise ValueError(
                f"global_index of shape {tuple(global_index.shape)} does not fit x of shape {tuple(x.shape)}: "
                "expected x of shape (batch * patches, channel, h, w)"
            )
        index = global_index.to(device=pos_embd.device, dtype=torch.long)
        iy, ix = index[:, 0], index[:, 1]
        if bool(
            (iy < 0).any()
            or (iy >= self.img_shape_y).any()
            or (ix < 0).any()
            or (ix >= self.img_shape_x).any()
        ):
            raise ValueError(
                f"global_index has indices outside the grid of shape {(self.img_shape_y, self.img_shape_x)}"
            )
        selected = pos_embd[:, iy, ix].permute(1, 0, 2, 3)  # (P, C_grid, h, w)
        return selected.repeat(x.shape[0] // num_patches, 1, 1, 1)

    def forward(  # type: ignore[override]
        self,
        x: torch.Tensor,
        noise_labels: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        global_index: torch.Tensor | None = None,
        embedding_selector: Callable[[torch.Tensor], torch.Tensor] | None = None,
        augment_labels: torch.Tensor | None = None,
        lead_time_label: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Concatenate the (patch of the) positional grid to ``x`` and run the U-Net.

        Parameters
        ----------
        x : torch.Tensor
            ``(batch, in_channels - N_grid_channels, y, x)``; a whole domain or patches.
        noise_labels : torch.Tensor
            ``(batch,)`` or ``(1,)``.
        class_labels : torch.Tensor, optional
            ``(batch, label_dim)``.
        global_index : torch.Tensor, optional
            ``(patches, 2, y, x)``, see :meth:`positional_embedding_indexing`.
        embedding_selector : callable, optional
            Maps the grid ``(N_grid_channels, H, W)`` to ``(batch, N_grid_channels, y, x)``;
            exclusive with ``global_index``.
        augment_labels : torch.Tensor, optional
            ``(batch, augment_dim)``.
        lead_time_label : torch.Tensor, optional
            Accepted for signature compatibility; ignored (no lead-time embedding), as in
            PhysicsNeMo's ``SongUNetPosEmbd``.

        Returns
        -------
        torch.Tensor
            ``(batch, out_channels, y, x)``.
        """
        if embedding_selector is not None and global_index is not None:
            raise ValueError("pass either embedding_selector or global_index, not both")
        expected = self.in_channels - self.embedding_channels
        if x.ndim != 4 or x.shape[1] != expected:
            raise ValueError(
                f"{type(self).__name__} expects x with {expected} channels (in_channels "
                f"{self.in_channels} minus {self.embedding_channels} embedding channels), got "
                f"shape {tuple(x.shape)}"
            )
        extra = self.appended_embeddings(x, global_index, embedding_selector, lead_time_label)
        if extra:
            x = torch.cat((x, *(e.to(x.dtype) for e in extra)), dim=1)
        return super().forward(x, noise_labels, class_labels, augment_labels)

    @property
    def embedding_channels(self) -> int:
        """Channels the network appends to its input itself (the positional grid)."""
        return self.N_grid_channels

    def appended_embeddings(
        self,
        x: torch.Tensor,
        global_index: torch.Tensor | None,
        embedding_selector: Callable[[torch.Tensor], torch.Tensor] | None,
        lead_time_label: torch.Tensor | None,
    ) -> list[torch.Tensor]:
        """What :meth:`forward` concatenates to ``x``: the (patch of the) positional grid.
        ``lead_time_label`` is ignored here, as in PhysicsNeMo's ``SongUNetPosEmbd``."""
        del lead_time_label
        if self.pos_embd is None:
            return []
        if embedding_selector is not None:
            return [embedding_selector(self.pos_embd.to(x.dtype))]
        return [self.positional_embedding_indexing(x, global_index)]
