"""CorrDiff's network wrappers: the regression UNet and EDM preconditioning for super-resolution.

Same constructor arguments, forward signatures and state_dict layout (everything under
``model.``) as PhysicsNeMo 2.2.2's ``CorrDiffRegressionUNet``/``UNet``
(``models/diffusion_unets/unet.py``) and ``EDMPrecondSuperResolution``/``EDMPrecondSR``
(``diffusion/preconditioners/legacy.py``), so a sampler calls ``net(x, img_lr, sigma)``
identically on ours and theirs.

References
----------
Karras, T., Aittala, M., Aila, T. and Laine, S. (2022). Elucidating the design space of
diffusion-based generative models. NeurIPS 35, Table 1 ("Ours" column).
Mardani, M. et al. (2025). Residual corrective diffusion modeling for km-scale atmospheric
downscaling. Communications Earth & Environment 6, 124.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch

from .song_unet import SongUNet, json_config
from .song_unet_pos import SongUNetPosEmbd
from .song_unet_pos_lt import SongUNetPosLtEmbd

__all__ = [
    "CorrDiffRegressionUNet",
    "EDMPrecondSR",
    "EDMPrecondSuperResolution",
    "UNet",
    "edm_scalings",
]

ModelType = Literal["SongUNetPosEmbd", "SongUNetPosLtEmbd", "SongUNet"]
_MODEL_TYPES: dict[str, type[SongUNet]] = {
    "SongUNetPosEmbd": SongUNetPosEmbd,
    "SongUNetPosLtEmbd": SongUNetPosLtEmbd,
    "SongUNet": SongUNet,
}


def edm_scalings(
    sigma: torch.Tensor, sigma_data: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""EDM preconditioning coefficients (Karras et al. 2022, Table 1).

    .. math::
        c_\mathrm{skip} = \frac{\sigma_d^2}{\sigma^2 + \sigma_d^2},\quad
        c_\mathrm{out} = \frac{\sigma \sigma_d}{\sqrt{\sigma^2 + \sigma_d^2}},\quad
        c_\mathrm{in} = \frac{1}{\sqrt{\sigma^2 + \sigma_d^2}},\quad
        c_\mathrm{noise} = \tfrac14 \ln \sigma

    so that the denoiser is :math:`D(x; \sigma) = c_\mathrm{skip} x + c_\mathrm{out}
    F(c_\mathrm{in} x; c_\mathrm{noise})`.

    Parameters
    ----------
    sigma : torch.Tensor
        Noise levels, any shape.
    sigma_data : float, default 0.5
        Standard deviation of the data.

    Returns
    -------
    c_skip, c_out, c_in, c_noise : torch.Tensor
        Each with the shape of ``sigma``.

    Examples
    --------
    >>> c_skip, c_out, c_in, c_noise = edm_scalings(torch.tensor([0.5, 1.5]))
    >>> c_skip
    tensor([0.5000, 0.1000])
    """
    c_skip = sigma_data**2 / (sigma**2 + sigma_data**2)
    c_out = sigma * sigma_data / (sigma**2 + sigma_data**2).sqrt()
    c_in = 1 / (sigma_data**2 + sigma**2).sqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


def _build_model(
    model_type: str,
    img_resolution: int | Sequence[int],
    in_channels: int,
    out_channels: int,
    model_kwargs: dict[str, Any],
) -> SongUNet:
    if model_type not in _MODEL_TYPES:
        raise ValueError(
            f"model_type {model_type!r} is not supported; expected one of {sorted(_MODEL_TYPES)} "
            "(PhysicsNeMo's DhariwalUNet is not implemented)"
        )
    return _MODEL_TYPES[model_type](
        img_resolution=img_resolution,
        in_channels=in_channels,
        out_channels=out_channels,
        **model_kwargs,
    )


class _Wrapper(torch.nn.Module):
    """Shared parts of the wrappers: the inner network, ``use_fp16`` and input checks."""

    model: SongUNet
    img_in_channels: int
    img_out_channels: int
    _use_fp16: bool

    @property
    def use_fp16(self) -> bool:
        """Whether the network runs in float16 (on CUDA); setting it casts the module."""
        return self._use_fp16

    @use_fp16.setter
    def use_fp16(self, value: bool) -> None:
        if not (isinstance(value, bool) or value in (0, 1)):
            raise ValueError(f"use_fp16 must be a bool, got {value!r}")
        self._use_fp16 = bool(value)
        self.to(torch.float16 if value else torch.float32)

    @property
    def grid_channels(self) -> int:
        """Channels the inner network appends itself (its positional grid)."""
        return int(getattr(self.model, "embedding_channels", 0))

    def _compute_dtype(self, x: torch.Tensor, force_fp32: bool) -> torch.dtype:
        return (
            torch.float16
            if (self.use_fp16 and not force_fp32 and x.device.type == "cuda")
            else torch.float32
        )

    def _check_inputs(self, x: torch.Tensor, img_lr: torch.Tensor | None) -> None:
        name = type(self).__name__
        if x.ndim != 4:
            raise ValueError(
                f"{name}: x must have shape (batch, channel, y, x), got {tuple(x.shape)}"
            )
        if x.shape[1] != self.img_out_channels:
            raise ValueError(
                f"{name}: x must have img_out_channels={self.img_out_channels} channels, got {x.shape[1]}"
            )
        if img_lr is None:
            return
        expected = self.img_in_channels - self.grid_channels
        if img_lr.ndim != 4 or img_lr.shape[1] != expected:
            grid = f" (img_in_channels {self.img_in_channels} minus {self.grid_channels} grid channels)"
            raise ValueError(
                f"{name}: img_lr must have {expected} channels{grid if self.grid_channels else ''}, "
                f"got shape {tuple(img_lr.shape)}"
            )
        if img_lr.shape[0] != x.shape[0] or img_lr.shape[2:] != x.shape[2:]:
            raise ValueError(
                f"{name}: img_lr of shape {tuple(img_lr.shape)} must match x of shape {tuple(x.shape)} "
                "in batch and spatial size (regrid the conditioning onto the output grid first)"
            )

    @staticmethod
    def round_sigma(sigma: float | Sequence[float] | torch.Tensor) -> torch.Tensor:
        """Noise level(s) as a tensor (EDM's identity rounding)."""
        return torch.as_tensor(sigma)


class UNet(_Wrapper):
    r"""CorrDiff regression network: predicts the conditional mean from the conditioning.

    ``forward(x, img_lr)`` runs the inner U-Net on ``cat(x, img_lr)`` with noise label 0;
    CorrDiff passes ``x = zeros`` of ``img_out_channels`` channels (the "zero latent").

    Parameters
    ----------
    img_resolution : int or (int, int)
        Global image size ``(H, W)``.
    img_in_channels : int
        Conditioning channels, *including* the positional grid channels of a
        ``SongUNetPosEmbd`` (CWA: 12 inputs + 4 grid = 16).
    img_out_channels : int
        Output channels.
    use_fp16 : bool, default False
        Keep the module in float16 and run it in float16 on CUDA.
    model_type : {"SongUNetPosEmbd", "SongUNetPosLtEmbd", "SongUNet"}
        Inner network class.
    **model_kwargs
        Passed to the inner network (e.g. ``model_channels``, ``channel_mult``,
        ``attn_resolutions``, ``embedding_type="zero"``, ``gridtype``).

    Attributes
    ----------
    model : SongUNet
        The inner network, built with ``in_channels = img_in_channels + img_out_channels``.
    config : dict
        JSON-serialisable constructor arguments (``model_kwargs`` flattened).
    """

    def __init__(
        self,
        img_resolution: int | Sequence[int],
        img_in_channels: int,
        img_out_channels: int,
        use_fp16: bool = False,
        model_type: ModelType = "SongUNetPosEmbd",
        **model_kwargs: Any,
    ) -> None:
        config = json_config(locals())
        super().__init__()
        self.config = config
        self.img_resolution = img_resolution
        self.img_shape_y, self.img_shape_x = (
            (img_resolution, img_resolution)
            if isinstance(img_resolution, int)
            else tuple(img_resolution)
        )
        self.img_in_channels = img_in_channels
        self.img_out_channels = img_out_channels
        self.model = _build_model(
            model_type,
            img_resolution,
            img_in_channels + img_out_channels,
            img_out_channels,
            model_kwargs,
        )
        self.use_fp16 = use_fp16

    def forward(
        self,
        x: torch.Tensor,
        img_lr: torch.Tensor | None = None,
        force_fp32: bool = False,
        **model_kwargs: Any,
    ) -> torch.Tensor:
        """Predict the conditional mean.

        Parameters
        ----------
        x : torch.Tensor
            Latent ``(batch, img_out_channels, y, x)``; zeros in CorrDiff.
        img_lr : torch.Tensor, optional
            Conditioning on the output grid ``(batch, img_in_channels - grid, y, x)``.
        force_fp32 : bool, default False
            Run in float32 even when ``use_fp16``.
        **model_kwargs
            Passed to the inner network (e.g. ``global_index`` for patches).

        Returns
        -------
        torch.Tensor
            ``(batch, img_out_channels, y, x)``, float32.
        """
        self._check_inputs(x, img_lr)
        if img_lr is not None:
            x = torch.cat((x, img_lr.to(x.dtype)), dim=1)
        dtype = self._compute_dtype(x, force_fp32)
        noise_labels = torch.zeros(x.shape[0], dtype=dtype, device=x.device)
        F_x = self.model(x.to(dtype), noise_labels, class_labels=None, **model_kwargs)
        return F_x.to(torch.float32)


CorrDiffRegressionUNet = UNet


class EDMPrecondSuperResolution(_Wrapper):
    r"""EDM-preconditioned denoiser for super-resolution (CorrDiff's residual diffusion model).

    .. math::
        D(x; \sigma, y) = c_\mathrm{skip}(\sigma)\, x + c_\mathrm{out}(\sigma)\,
        F\big([c_\mathrm{in}(\sigma)\, x,\; y];\; c_\mathrm{noise}(\sigma)\big)

    with ``y = img_lr`` the conditioning and the coefficients of :func:`edm_scalings`.

    Parameters
    ----------
    img_resolution : int or (int, int)
        Global image size ``(H, W)``.
    img_in_channels : int
        Conditioning channels, including positional grid channels (see :class:`UNet`);
        in CorrDiff the conditioning also includes the regression mean.
    img_out_channels : int
        Channels of ``x`` (the residual).
    use_fp16 : bool, default False
        Keep the module in float16 and run it in float16 on CUDA.
    model_type : {"SongUNetPosEmbd", "SongUNetPosLtEmbd", "SongUNet"}
        Inner network class.
    sigma_data : float, default 0.5
        Data standard deviation :math:`\sigma_d`.
    sigma_min, sigma_max : float, default 0 and inf
        Supported noise range (samplers clip their schedule to it).
    **model_kwargs
        Passed to the inner network.

    Attributes
    ----------
    model : SongUNet
        Inner network :math:`F`, ``in_channels = img_in_channels + img_out_channels``.
    config : dict
        JSON-serialisable constructor arguments (``sigma_max=inf`` is kept as a float;
        ``json.dumps`` writes it as ``Infinity`` like PhysicsNeMo does).
    """

    def __init__(
        self,
        img_resolution: int | Sequence[int],
        img_in_channels: int,
        img_out_channels: int,
        use_fp16: bool = False,
        model_type: ModelType = "SongUNetPosEmbd",
        sigma_data: float = 0.5,
        sigma_min: float = 0.0,
        sigma_max: float = math.inf,
        **model_kwargs: Any,
    ) -> None:
        config = json_config(locals())
        super().__init__()
        self.config = config
        self.img_resolution = img_resolution
        self.img_in_channels = img_in_channels
        self.img_out_channels = img_out_channels
        self.sigma_data = float(sigma_data)
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.model = _build_model(
            model_type,
            img_resolution,
            img_in_channels + img_out_channels,
            img_out_channels,
            model_kwargs,
        )
        self.use_fp16 = use_fp16

    def network_input(
        self, x: torch.Tensor, img_lr: torch.Tensor, c_in: torch.Tensor
    ) -> torch.Tensor:
        """``cat(c_in * x, img_lr)``: only the noisy state is scaled. Shapes ``(batch, C, y, x)``."""
        return torch.cat([c_in * x, img_lr.to(x.dtype)], dim=1)

    def forward(
        self,
        x: torch.Tensor,
        img_lr: torch.Tensor | None,
        sigma: torch.Tensor | float,
        force_fp32: bool = False,
        **model_kwargs: Any,
    ) -> torch.Tensor:
        """Denoise ``x`` at noise level ``sigma`` given ``img_lr``.

        Parameters
        ----------
        x : torch.Tensor
            Noisy state ``(batch, img_out_channels, y, x)``.
        img_lr : torch.Tensor or None
            Conditioning ``(batch, img_in_channels - grid, y, x)``.
        sigma : torch.Tensor or float
            Noise level: a scalar, ``(batch,)``, ``(batch, 1)`` or ``(batch, 1, 1, 1)``.
        force_fp32 : bool, default False
            Run in float32 even when ``use_fp16``.
        **model_kwargs
            Passed to the inner network (e.g. ``global_index`` for patches).

        Returns
        -------
        torch.Tensor
            Denoised estimate ``D(x; sigma)``, ``(batch, img_out_channels, y, x)``, float32.
        """
        self._check_inputs(x, img_lr)
        x = x.to(torch.float32)
        sigma = torch.as_tensor(sigma, device=x.device).to(torch.float32).reshape(-1, 1, 1, 1)
        dtype = self._compute_dtype(x, force_fp32)
        c_skip, c_out, c_in, c_noise = edm_scalings(sigma, self.sigma_data)
        arg = c_in * x if img_lr is None else self.network_input(x, img_lr, c_in)
        F_x = self.model(arg.to(dtype), c_noise.flatten(), class_labels=None, **model_kwargs)
        return c_skip * x + c_out * F_x.to(torch.float32)


class EDMPrecondSR(EDMPrecondSuperResolution):
    r"""Legacy CorrDiff preconditioning (PhysicsNeMo's deprecated ``EDMPrecondSR``).

    Identical to :class:`EDMPrecondSuperResolution` except that with
    ``scale_cond_input=True`` (the old default) the conditioning is scaled too:
    the network input is ``c_in * cat(x, img_lr)`` (NVIDIA/modulus issue 229). Needed to
    run checkpoints trained that way.

    Parameters
    ----------
    img_resolution, img_in_channels, img_out_channels, use_fp16, sigma_min, sigma_max, sigma_data, model_type
        As :class:`EDMPrecondSuperResolution`.
    img_channels : int
        Unused; kept for checkpoint compatibility.
    scale_cond_input : bool, default True
        Scale the conditioning by ``c_in`` as well.
    **model_kwargs
        Passed to the inner network.
    """

    def __init__(
        self,
        img_resolution: int | Sequence[int],
        img_channels: int,
        img_in_channels: int,
        img_out_channels: int,
        use_fp16: bool = False,
        sigma_min: float = 0.0,
        sigma_max: float = math.inf,
        sigma_data: float = 0.5,
        model_type: ModelType = "SongUNetPosEmbd",
        scale_cond_input: bool = True,
        **model_kwargs: Any,
    ) -> None:
        config = json_config(locals())
        super().__init__(
            img_resolution=img_resolution,
            img_in_channels=img_in_channels,
            img_out_channels=img_out_channels,
            use_fp16=use_fp16,
            model_type=model_type,
            sigma_data=sigma_data,
            sigma_min=sigma_min,
            sigma_max=sigma_max,
            **model_kwargs,
        )
        self.config = config
        self.img_channels = img_channels
        self.scale_cond_input = bool(scale_cond_input)

    def network_input(
        self, x: torch.Tensor, img_lr: torch.Tensor, c_in: torch.Tensor
    ) -> torch.Tensor:
        """``c_in * cat(x, img_lr)`` when ``scale_cond_input``, else ``cat(c_in * x, img_lr)``."""
        if self.scale_cond_input:
            return c_in * torch.cat([x, img_lr.to(x.dtype)], dim=1)
        return super().network_input(x, img_lr, c_in)
