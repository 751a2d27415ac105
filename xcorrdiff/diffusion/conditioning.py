"""The CorrDiff condition: what both networks see besides the noisy state, in one place.

A :class:`Condition` holds, for a batch of ``n`` rows on the HR grid (or on patches of it):

``inputs``          the normalized LR input regridded onto the HR grid, with the invariants,
                    ``(n, C_in, h, w)``;
``mean``            the regression mean μ ``(n, C_out, h, w)`` when the diffusion model is
                    conditioned on it (CorrDiff's configurations are), else ``None``;
``global_inputs``   on patches: each row's whole-domain ``inputs`` resized bilinearly to
                    the patch (PhysicsNeMo's "global low-res" channels), else ``None``;
``embedding_selector``  on patches: maps the network's whole-domain positional embedding
                    ``(N_pe, H, W)`` (or per-sample embeddings ``(batch, C, H, W)``, a
                    lead-time table's rows) to each row's patch of it;
``lead_time``       the integer lead-time label of each *sample* ``(batch,)`` (shared by
                    its patches), for a lead-time-aware network
                    (:class:`~xcorrdiff.nn.SongUNetPosLtEmbd`), else ``None``.

The network sees the channels ``[mean, inputs, global_inputs]`` (those present), which is
PhysicsNeMo's order, so its checkpoints load and agree. New kinds of condition (lead time,
masks, observations) become fields here; the losses, samplers and inference blocks pass the
object through without knowing what it holds.

One function each builds a condition (:func:`build_condition`), crops it to random training
patches (:func:`crop_condition`) or to a generation grid (:func:`unfold_condition`).
Normalization stays at the xarray seam (:class:`xcorrdiff.data.normalize.Normalizer`, in the
prepare step), where its statistics are fitted lazily; every tensor here is normalized.
:func:`denoise` calls a network on a condition, and :class:`Denoiser` binds one to a network
as the ``D(x; σ)`` the samplers take.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

from xcorrdiff._checks import autocast
from xcorrdiff.diffusion.input_skip import InputSkip
from xcorrdiff.diffusion.patching import PatchGrid, extract_patches

__all__ = [
    "Condition",
    "Denoiser",
    "build_condition",
    "crop_condition",
    "denoise",
    "mean_of_inputs",
    "patched_regression_mean",
    "regression_mean",
    "unfold_condition",
]

EmbeddingSelector = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Condition:
    """The CorrDiff condition of ``n`` rows (see the module docstring)."""

    inputs: torch.Tensor
    mean: torch.Tensor | None = None
    global_inputs: torch.Tensor | None = None
    embedding_selector: EmbeddingSelector | None = None
    lead_time: torch.Tensor | None = None

    def network_kwargs(self, positional: bool = True) -> dict[str, Any]:
        """The keyword arguments a network call takes from the condition: the embedding
        selector (``positional``) and the lead-time labels, those present."""
        kwargs: dict[str, Any] = {}
        if positional and self.embedding_selector is not None:
            kwargs["embedding_selector"] = self.embedding_selector
        if self.lead_time is not None:
            kwargs["lead_time_label"] = self.lead_time
        return kwargs

    @property
    def rows(self) -> int:
        """Number of rows (members, or member patches)."""
        return int(self.inputs.shape[0])

    def channels(self) -> torch.Tensor:
        """The network's condition channels ``[mean, inputs, global_inputs]``, concatenated
        once per condition (a sampler calls the network with them at every step)."""
        return self._channels

    @functools.cached_property
    def _channels(self) -> torch.Tensor:
        parts = [t for t in (self.mean, self.inputs, self.global_inputs) if t is not None]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def build_condition(
    inputs: torch.Tensor, mean: torch.Tensor | None = None, lead_time: torch.Tensor | None = None
) -> Condition:
    """The condition of a batch on the whole HR grid.

    Parameters
    ----------
    inputs : torch.Tensor
        Normalized input on the HR grid with the invariants, ``(batch, C_in, H, W)``.
    mean : torch.Tensor, optional
        Regression mean ``(batch or 1, C_out, H, W)`` (detached; broadcast over the batch).
    lead_time : torch.Tensor, optional
        Integer lead-time labels ``(batch,)`` of a lead-time-aware network.

    Raises
    ------
    ValueError
        If a tensor is not 4-D or ``mean`` does not match ``inputs``.
    """
    if inputs.ndim != 4:
        raise ValueError(f"inputs must have shape (batch, C_in, H, W), got {tuple(inputs.shape)}")
    if mean is not None:
        batch, spatial = inputs.shape[0], tuple(inputs.shape[-2:])
        if mean.ndim != 4 or mean.shape[0] not in (1, batch) or tuple(mean.shape[-2:]) != spatial:
            raise ValueError(
                f"mean must have shape (1 or {batch}, C_out, {spatial[0]}, {spatial[1]}) to "
                f"match the inputs, got {tuple(mean.shape)}"
            )
        mean = mean.detach().expand(batch, -1, -1, -1)
    if lead_time is not None:
        lead_time = torch.as_tensor(lead_time, device=inputs.device).reshape(-1).long()
        if lead_time.shape[0] != inputs.shape[0]:
            raise ValueError(
                f"lead_time must hold one label per row ({inputs.shape[0]}), got "
                f"{tuple(lead_time.shape)}"
            )
    return Condition(inputs=inputs, mean=mean, lead_time=lead_time)


def crop_condition(
    condition: Condition,
    offsets: torch.Tensor,
    patch_shape: tuple[int, int],
    *,
    global_inputs: bool = True,
) -> Condition:
    """The condition on random training patches, member-major (PhysicsNeMo's layout).

    Parameters
    ----------
    condition : Condition
        A whole-domain condition (:func:`build_condition`) of ``batch`` rows.
    offsets : torch.Tensor
        Top-left ``(y, x)`` corners: ``(k, 2)`` for every member, or ``(batch, k, 2)``,
        each member's own (see :func:`~xcorrdiff.diffusion.patching.extract_patches`).
    patch_shape : (int, int)
        Patch size.
    global_inputs : bool, default True
        Append each member's whole-domain inputs resized to the patch.
    """
    batch = condition.rows
    num = offsets.shape[-2]
    resized = F.interpolate(condition.inputs, size=patch_shape, mode="bilinear")
    if offsets.ndim == 3:
        rows = offsets.reshape(-1, 2)  # (B, k, 2) corners flattened member-major

        def select(emb: torch.Tensor) -> torch.Tensor:
            if emb.ndim == 4:  # per-sample rows: each sample's own corners
                return extract_patches(emb, offsets, patch_shape)
            return extract_patches(emb, rows, patch_shape)

    else:

        def select(emb: torch.Tensor) -> torch.Tensor:
            return extract_patches(_per_sample(emb, batch), offsets, patch_shape)

    return Condition(
        inputs=extract_patches(condition.inputs, offsets, patch_shape),
        mean=extract_patches(condition.mean, offsets, patch_shape)
        if condition.mean is not None
        else None,
        global_inputs=resized.repeat_interleave(num, dim=0) if global_inputs else None,
        embedding_selector=select,
        lead_time=condition.lead_time,
    )


def _per_sample(emb: torch.Tensor, batch: int) -> torch.Tensor:
    """An embedding ``(C, H, W)`` shared by the batch as ``(batch, C, H, W)``; per-sample
    embeddings ``(batch, C, H, W)`` (lead-time rows) as they are."""
    return emb if emb.ndim == 4 else emb[None].expand(batch, -1, -1, -1)


def unfold_condition(
    condition: Condition,
    grid: PatchGrid,
    *,
    global_inputs: bool = True,
    origin: tuple[int, int] = (0, 0),
) -> Condition:
    """The condition on the patches of a generation grid (member-major rows).

    ``global_inputs`` appends each member's whole-domain inputs resized to the patch. The
    grid may cover a sub-rectangle of the condition's domain whose top-left pixel is
    ``origin``: inputs, mean and positional embedding are cut to it, while the global
    inputs stay those of the whole domain.
    """
    batch = condition.rows
    (y0, x0), (h, w) = origin, grid.domain_shape

    def crop(t: torch.Tensor) -> torch.Tensor:
        return t[..., y0 : y0 + h, x0 : x0 + w]

    def select(emb: torch.Tensor) -> torch.Tensor:
        return grid.unfold(_per_sample(crop(emb), batch))

    resized = None
    if global_inputs:
        resized = F.interpolate(condition.inputs, size=grid.patch_shape, mode="bilinear")
        resized = resized.repeat_interleave(grid.num_patches, dim=0)
    return Condition(
        inputs=grid.unfold(crop(condition.inputs)),
        mean=grid.unfold(crop(condition.mean)) if condition.mean is not None else None,
        global_inputs=resized,
        embedding_selector=select,
        lead_time=condition.lead_time,
    )


def denoise(
    net: Any, x: torch.Tensor, sigma: torch.Tensor, condition: Condition, *, positional: bool = True
) -> torch.Tensor:
    """``D(x; σ, condition)``: ``net(x, condition channels, σ[, embedding_selector=...])``.

    ``sigma`` is one level per row, ``(n,)``. ``positional=False`` leaves out the embedding
    selector (networks without a positional embedding do not take it); lead-time labels
    go with the call when the condition has them.
    """
    return net(x, condition.channels(), sigma, **condition.network_kwargs(positional))


def regression_mean(
    net: Any, condition: Condition, out_channels: int, skip: InputSkip | None = None
) -> torch.Tensor:
    """μ = ``net(0, condition)`` (PhysicsNeMo's regression UNet takes a zero-filled state),
    ``(rows, out_channels, H, W)``; with an input ``skip`` the network's output is the
    correction to each output's own input (:mod:`xcorrdiff.diffusion.input_skip`).

    On the whole domain the condition is the inputs alone, as in PhysicsNeMo; on patches
    (:func:`crop_condition`, :func:`unfold_condition`) it also holds the whole domain's
    inputs resized to the patch, and the patches' positional embeddings are selected.
    """
    inputs = condition.inputs
    zeros = inputs.new_zeros((inputs.shape[0], out_channels, *inputs.shape[2:]))
    if condition.global_inputs is None:
        out = net(zeros, inputs, **condition.network_kwargs(positional=False))
    else:
        out = net(zeros, condition.channels(), **condition.network_kwargs())
    return out if skip is None else skip.apply(out, inputs)


def patched_regression_mean(
    net: Any,
    condition: Condition,
    out_channels: int,
    grid: PatchGrid | None,
    skip: InputSkip | None = None,
) -> torch.Tensor:
    """μ on the whole domain: in one pass (``grid`` None), or patch by patch on ``grid``
    (a regression trained on patches) and blended back."""
    if grid is None:
        return regression_mean(net, condition, out_channels, skip)
    rows = unfold_condition(condition, grid, global_inputs=True)
    return grid.fold(regression_mean(net, rows, out_channels, skip))


def mean_of_inputs(
    net: Any,
    inputs: torch.Tensor,
    out_channels: int,
    grid: PatchGrid | None,
    lead_time: torch.Tensor | None = None,
    skip: InputSkip | None = None,
) -> torch.Tensor:
    """μ ``(rows, out_channels, H, W)`` of normalized inputs ``(rows, C_in, H, W)`` on the
    whole domain (with lead-time labels for a lead-time-aware network, and the model's
    input skip): the one computation of the regression mean that training,
    :meth:`CorrDiffModel.regression_mean` and the downscaling pipeline share."""
    return patched_regression_mean(
        net, build_condition(inputs, lead_time=lead_time), out_channels, grid, skip
    )


class Denoiser:
    """A network with its condition bound: ``D(x, sigma)`` for the samplers.

    On a :class:`PatchGrid` the state is cut into the grid's patches, denoised patch by
    patch and blended back (multi-diffusion), so the samplers never see patches.

    Parameters
    ----------
    net : callable
        ``net(x, condition, sigma[, embedding_selector=...])``, e.g. an EDM-preconditioned
        SongUNet; its ``sigma_min``, ``sigma_max``, ``round_sigma`` and
        ``img_out_channels`` are exposed.
    condition : Condition
        Whole-domain condition of the batch (:func:`build_condition`).
    grid : PatchGrid, optional
        Denoise on this grid's patches.
    origin : (int, int), default (0, 0)
        Top-left pixel, in the condition's domain, of the sub-rectangle the grid covers
        (sub-domain generation; see :func:`unfold_condition`).
    global_inputs : bool, default True
        On patches, append the whole-domain inputs resized to the patch.
    positional : bool, default True
        Pass the embedding selector (networks with a positional embedding).
    precision : str, optional
        Run the network in float32 under autocast to this precision
        (:func:`xcorrdiff._checks.autocast`); ``None`` calls it in the state's dtype.
    """

    def __init__(
        self,
        net: Any,
        condition: Condition,
        *,
        grid: PatchGrid | None = None,
        origin: tuple[int, int] = (0, 0),
        global_inputs: bool = True,
        positional: bool = True,
        precision: str | None = None,
    ) -> None:
        self.net = net
        self.grid = grid
        self.condition = condition
        if grid is not None:
            self.condition = unfold_condition(
                condition, grid, global_inputs=global_inputs, origin=origin
            )
        if precision is not None:  # the network runs in float32 under autocast
            self.condition = _as_float(self.condition)
        self.positional = positional
        self.precision = precision
        self.sigma_min = float(getattr(net, "sigma_min", 0.0))
        self.sigma_max = float(getattr(net, "sigma_max", float("inf")))
        self.round_sigma = getattr(net, "round_sigma", None)
        self.img_out_channels = getattr(net, "img_out_channels", None)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        rows = self.grid.unfold(x) if self.grid is not None else x
        sigmas = sigma.expand(rows.shape[0])
        if self.precision is None:
            out = denoise(self.net, rows, sigmas, self.condition, positional=self.positional)
        else:
            out = self._reduced(rows, sigmas)
        out = out.to(x.dtype)
        return self.grid.fold(out) if self.grid is not None else out

    def _reduced(self, rows: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
        with autocast(rows.device, str(self.precision)):
            out = denoise(
                self.net, rows.float(), sigmas.float(), self.condition, positional=self.positional
            )
        return out.float()


def _as_float(condition: Condition) -> Condition:
    """The condition with its tensors in float32."""
    return replace(
        condition,
        inputs=condition.inputs.float(),
        mean=condition.mean.float() if condition.mean is not None else None,
        global_inputs=condition.global_inputs.float()
        if condition.global_inputs is not None
        else None,
    )
