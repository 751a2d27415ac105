"""Speed options for the networks: channels-last layout and ``torch.compile`` with a fallback.

Neither changes a module's parameters, buffers, ``state_dict`` keys or ``config``, so
checkpoints stay interchangeable with PhysicsNeMo; both act in place and return the module.

* :func:`set_channels_last` — run every :class:`~xcorrdiff.nn.SongUNet` inside a module in
  NHWC memory layout end to end (oneDNN/cuDNN's preferred layout for convolutions).
* :func:`maybe_compile` — ``torch.compile`` (TorchInductor by default: fused GroupNorm +
  SiLU and elementwise kernels) that falls back to eager execution, with one warning, when
  compilation fails (no C++ compiler, an unsupported backend, ...).

Results agree with the default (NCHW, eager) path to float32 rounding (about 1e-6
relative), not bit for bit: convolution kernels sum in a different order.

Examples
--------
>>> import torch
>>> from xcorrdiff.nn import SongUNet
>>> net = SongUNet(img_resolution=16, in_channels=3, out_channels=2, model_channels=16,
...                channel_mult=[1, 2], attn_resolutions=[8], num_blocks=1)
>>> net = set_channels_last(net)
>>> net(torch.zeros(1, 3, 16, 16), torch.zeros(1)).is_contiguous(memory_format=torch.channels_last)
True
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from .song_unet import SongUNet

__all__ = ["is_compiled", "maybe_compile", "set_channels_last"]

ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


def set_channels_last(module: ModuleT, enabled: bool = True) -> ModuleT:
    """Run the SongUNets inside ``module`` in channels-last (NHWC) memory layout.

    Converts the 4-D weights to ``torch.channels_last`` and sets
    :attr:`SongUNet.channels_last`, so inputs are converted on entry and every layer keeps
    the layout. Outputs are channels-last tensors of the usual ``(batch, C, y, x)`` shape.

    Parameters
    ----------
    module : torch.nn.Module
        A :class:`~xcorrdiff.nn.SongUNet` or a module holding some (a preconditioner,
        the regression :class:`~xcorrdiff.nn.UNet`).
    enabled : bool, default True
        ``False`` restores the default contiguous (NCHW) layout.

    Returns
    -------
    torch.nn.Module
        ``module`` itself.

    Raises
    ------
    ValueError
        If ``module`` holds no SongUNet.
    """
    nets = [m for m in module.modules() if isinstance(m, SongUNet)]
    if not nets:
        raise ValueError(
            f"set_channels_last needs a module holding a SongUNet, got {type(module).__name__}; "
            "pass the network (or its preconditioner)"
        )
    memory_format = torch.channels_last if enabled else torch.contiguous_format
    with torch.no_grad():
        for param in module.parameters():
            if param.ndim == 4:  # convolution weights; the Parameter objects stay the same
                param.data = param.data.contiguous(memory_format=memory_format)
    for net in nets:
        net.channels_last = bool(enabled)
    return module


class _CompiledCall:
    """``torch.compile``'d ``module._call_impl`` that switches to eager when compiling fails."""

    def __init__(self, module: torch.nn.Module, compiled: Callable[..., Any]) -> None:
        self.module = module
        self.compiled = compiled

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.compiled(*args, **kwargs)
        except Exception as exc:
            # An error of the call itself (bad shapes, ...) is raised again by eager mode.
            out = self.module._call_impl(*args, **kwargs)
            self.module._compiled_call_impl = None
            reason = " ".join(line.strip() for line in str(exc).splitlines()[:2] if line.strip())
            warnings.warn(
                f"torch.compile failed for {type(self.module).__name__} "
                f"({type(exc).__name__}: {reason[:200]}); running it eagerly instead",
                RuntimeWarning,
                stacklevel=3,
            )
            return out


def maybe_compile(
    module: ModuleT,
    *,
    backend: str | Callable[..., Any] = "inductor",
    mode: str | None = None,
    dynamic: bool | None = None,
    fullgraph: bool = False,
    options: dict[str, Any] | None = None,
) -> ModuleT:
    """Compile ``module`` in place with ``torch.compile``, falling back to eager on failure.

    Like :meth:`torch.nn.Module.compile`: the module keeps its identity, parameters and
    ``state_dict`` keys (no ``_orig_mod.`` prefix), so optimizers, checkpoints and
    ``train()``/``eval()`` work as before. Compilation happens on the first call (and again
    for new shapes, dtypes or train/eval mode); exclude those calls from timings.

    If the compiled call raises (compiler missing, backend unsupported, a lowering bug)
    and the eager call succeeds, a :class:`RuntimeWarning` is issued and the module runs
    eagerly from then on. An error that eager mode raises too is propagated unchanged.
    Failures while compiling the *backward* graph surface in ``loss.backward()`` and are
    not caught.

    Parameters
    ----------
    module : torch.nn.Module
        Network to compile, e.g. a preconditioned SongUNet.
    backend, mode, dynamic, fullgraph, options
        Passed to :func:`torch.compile`.

    Returns
    -------
    torch.nn.Module
        ``module`` itself.

    Examples
    --------
    >>> net = maybe_compile(torch.nn.Linear(2, 2))
    >>> is_compiled(net)
    True
    """
    compiled = torch.compile(
        module._call_impl,
        backend=backend,
        mode=mode,
        dynamic=dynamic,
        fullgraph=fullgraph,
        options=options,
    )
    module._compiled_call_impl = _CompiledCall(module, compiled)
    return module


def is_compiled(module: torch.nn.Module) -> bool:
    """Whether ``module`` runs through ``torch.compile`` (False after a fallback to eager)."""
    return getattr(module, "_compiled_call_impl", None) is not None
