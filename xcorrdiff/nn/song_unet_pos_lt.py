"""SongUNetPosLtEmbd: the positional-embedding SongUNet with a learned lead-time embedding.

State_dict-compatible with PhysicsNeMo 2.2.2's ``SongUNetPosLtEmbd`` (GEFS-HRRR CorrDiff):
a learned table ``lt_embd`` of shape ``(lead_time_steps, lead_time_channels, H, W)``; each
sample's row, chosen by its integer ``lead_time_label``, is concatenated to the input after
the positional grid. Optional ``prob_channels`` are output channels scaled by a learned
``scalar`` and, in eval mode, turned into probabilities by a softmax across them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from xcorrdiff._checks import check_int

from .song_unet import json_config
from .song_unet_pos import SongUNetPosEmbd

__all__ = ["SongUNetPosLtEmbd"]


class SongUNetPosLtEmbd(SongUNetPosEmbd):
    r"""SongUNetPosEmbd with a learned lead-time embedding (PhysicsNeMo's lead-time model).

    Parameters
    ----------
    lead_time_channels : int
        Channels of the lead-time embedding (>= 1).
    lead_time_steps : int, default 9
        Rows of the table: the integer lead-time labels ``0 … lead_time_steps - 1``.
    prob_channels : sequence of int, default ()
        Output channels that are class probabilities (a softmax across them in eval mode;
        scaled logits in training mode).
    in_channels : int
        Channels of the U-Net input *including* the ``N_grid_channels`` grid and the
        ``lead_time_channels`` embedding channels.
    **others
        As :class:`SongUNetPosEmbd`.

    Examples
    --------
    >>> net = SongUNetPosLtEmbd(img_resolution=16, in_channels=2 + 4 + 3, out_channels=2,
    ...                         model_channels=16, channel_mult=[1, 2], attn_resolutions=[8],
    ...                         num_blocks=1, lead_time_channels=3, lead_time_steps=5)
    >>> net(torch.zeros(2, 2, 16, 16), torch.zeros(2), lead_time_label=torch.tensor([0, 4])).shape
    torch.Size([2, 2, 16, 16])
    """

    def __init__(
        self,
        img_resolution: int | Sequence[int],
        in_channels: int,
        out_channels: int,
        *,
        lead_time_channels: int,
        lead_time_steps: int = 9,
        prob_channels: Sequence[int] = (),
        **others: Any,
    ) -> None:
        config = json_config({**others, **locals()})
        config.pop("others", None)
        check_int("lead_time_channels", lead_time_channels, minimum=1)
        check_int("lead_time_steps", lead_time_steps, minimum=1)
        if any(not 0 <= int(c) < out_channels for c in prob_channels):
            raise ValueError(
                f"prob_channels={list(prob_channels)!r} is invalid; expected output channels "
                f"0 … {out_channels - 1}"
            )
        super().__init__(img_resolution, in_channels, out_channels, **others)
        self.config = config
        self.lead_time_channels = lead_time_channels
        self.lead_time_steps = lead_time_steps
        if self.embedding_channels > in_channels:
            raise ValueError(
                f"in_channels {in_channels} must include the {self.embedding_channels} grid and "
                "lead-time channels"
            )
        self.lt_embd = torch.nn.Parameter(
            torch.randn(lead_time_steps, lead_time_channels, self.img_shape_y, self.img_shape_x)
        )
        self.prob_channels = [int(c) for c in prob_channels]
        if self.prob_channels:
            self.scalar = torch.nn.Parameter(torch.ones((1, len(self.prob_channels), 1, 1)))

    @property
    def embedding_channels(self) -> int:
        """Channels the network appends itself: the positional grid, then the lead-time rows."""
        return self.N_grid_channels + self.lead_time_channels

    def appended_embeddings(
        self,
        x: torch.Tensor,
        global_index: torch.Tensor | None,
        embedding_selector: Callable[[torch.Tensor], torch.Tensor] | None,
        lead_time_label: torch.Tensor | None,
    ) -> list[torch.Tensor]:
        """The positional grid and each sample's lead-time rows, ``(P * B, C, h, w)`` each:
        the whole domain, the patches of ``global_index`` (batch element ``b * P + p``) or
        those of ``embedding_selector``."""
        if lead_time_label is None:
            raise ValueError(
                "lead_time_label is required by SongUNetPosLtEmbd: one integer label per sample"
            )
        labels = torch.as_tensor(lead_time_label, device=self.lt_embd.device).reshape(-1).long()
        if bool((labels < 0).any() or (labels >= self.lead_time_steps).any()):
            raise ValueError(
                f"lead_time_label {labels.tolist()} is out of range; expected integers 0 … "
                f"{self.lead_time_steps - 1} (lead_time_steps={self.lead_time_steps})"
            )
        grid = super().appended_embeddings(x, global_index, embedding_selector, None)
        rows = self.lt_embd.to(x.dtype)[labels]  # (B, C_lt, H, W)
        if embedding_selector is not None:
            return [*grid, embedding_selector(rows)]
        if global_index is None:
            return [*grid, rows]
        index = global_index.to(device=rows.device, dtype=torch.long)
        patches = rows[:, :, index[:, 0], index[:, 1]]  # (B, C_lt, P, h, w)
        lead = patches.permute(0, 2, 1, 3, 4).reshape(
            -1, self.lead_time_channels, *index.shape[-2:]
        )
        return [*grid, lead]

    def forward(  # type: ignore[override]
        self,
        x: torch.Tensor,
        noise_labels: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        lead_time_label: torch.Tensor | None = None,
        global_index: torch.Tensor | None = None,
        embedding_selector: Callable[[torch.Tensor], torch.Tensor] | None = None,
        augment_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Append the positional grid and each sample's lead-time rows (``lead_time_label``,
        ``(batch,)`` integers, required) to ``x``, run the U-Net, and turn
        ``prob_channels`` into probabilities in eval mode (scaled logits in training)."""
        out = super().forward(
            x, noise_labels, class_labels, global_index, embedding_selector, augment_labels,
            lead_time_label,
        )  # fmt: skip
        if not self.prob_channels:
            return out
        logits = out[:, self.prob_channels] * self.scalar.to(out.dtype)
        out = out.clone()
        out[:, self.prob_channels] = (
            logits if self.training else logits.softmax(dim=1).to(out.dtype)
        )
        return out
