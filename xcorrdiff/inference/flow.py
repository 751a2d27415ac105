"""The per-chunk work of a rectified-flow model (:class:`~xcorrdiff.nn.FlowDiT`): its
members generated whole, with no regression stage.

Each member starts from ``t_max`` times its own unit noise, drawn on the whole domain from
the generator of its (seed, time stamp, member) as for the EDM models
(:func:`~xcorrdiff.inference.blocks.member_seed`), and is integrated by Euler or Heun steps
of :mod:`xcorrdiff.diffusion.rectified_flow` in float32 (the network under the request's
autocast precision, one member per forward pass: a DiT's matrix products over a batch may
round differently from one member's, and a member must not depend on its batch; on the
whole domain one member already fills a GPU). The DiT takes only its whole domain, so a ``region`` is cut from the
whole-domain members: the same numbers as the whole domain's there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from xcorrdiff._checks import autocast
from xcorrdiff._model_checks import FLOW_SOLVERS
from xcorrdiff.diffusion.rectified_flow import (
    flow_euler,
    flow_heun,
    flow_initial_state,
    flow_times,
    velocity,
)
from xcorrdiff.inference.blocks import (
    Settings,
    _check_finite,
    _check_outputs,
    _check_ranges,
    _use_caller_threads,
    member_generators,
    run_in_batches,
)
from xcorrdiff.inference.handles import ModelRef, model_on, worker_device
from xcorrdiff.inference.request import DownscaleRequest
from xcorrdiff.nn.flow_dit import FlowDiT, year_phase_conditions

if TYPE_CHECKING:
    from xcorrdiff.model import CorrDiffModel

__all__ = ["check_flow_request", "flow_block", "flow_network", "flow_scalars"]


def flow_network(model: CorrDiffModel) -> FlowDiT:
    """The model's :class:`~xcorrdiff.nn.FlowDiT` (the model checks guarantee it)."""
    net = model.diffusion
    if not isinstance(net, FlowDiT):
        raise TypeError(f"model's diffusion network is a {type(net).__name__}, not a FlowDiT")
    return net


def check_flow_request(
    request: DownscaleRequest, observations: Any, model: CorrDiffModel, lr: Any
) -> None:
    """Refuse what a rectified-flow model does not do, naming the argument."""
    sampling, domain = request.sampling, request.domain
    times = lr["time"].values if "time" in lr.coords else None
    if flow_network(model).day_of_year and (times is None or times.dtype.kind != "M"):
        raise ValueError(
            "this model conditions on the day of the year: the input needs a 'time' "
            "coordinate of numpy datetimes (standard calendar); convert cftime dates with "
            "lr.convert_calendar('standard')"
        )
    problems = []
    if sampling.sampler not in FLOW_SOLVERS:
        problems.append(f"sampler={sampling.sampler!r} (it samples with {list(FLOW_SOLVERS)})")
    if sampling.s_churn or sampling.renoise:
        problems.append("churn or re-noising (its sampler is deterministic)")
    if domain.patch_shape is not None:
        problems.append(f"patch_shape={domain.patch_shape} (the DiT takes its whole domain)")
    if request.return_mean:
        problems.append("return_mean=True (it has no regression mean)")
    if observations is not None:
        problems.append("observations (station guidance needs a residual diffusion model)")
    if problems:
        raise ValueError(
            "this model generates whole fields with a rectified-flow DiT and does not take "
            + "; ".join(problems)
        )


def flow_scalars(model: CorrDiffModel, times: np.ndarray | None, n: int) -> np.ndarray:
    """The scalar conditions ``(time, k)`` of the valid ``times``, as the DiT was trained."""
    net = flow_network(model)  # its times checked by check_flow_request
    stamps = np.asarray(times) if times is not None else np.zeros(n, "datetime64[ns]")
    return year_phase_conditions(stamps, net.presence_flags, net.day_of_year)


def flow_block(
    condition: np.ndarray,
    scalars: np.ndarray,
    time_keys: np.ndarray,
    ref: ModelRef,
    *,
    settings: Settings,
) -> np.ndarray:
    """Members ``(member, time, C_out, y, x)``, normalized, of a block of normalized
    conditions ``(time, C, H, W)`` and scalar conditions ``(time, k)``."""
    _check_finite(condition, settings.condition_variables)
    _check_ranges(condition, settings.ranges)
    _use_caller_threads(settings)
    request = settings.request
    sampling, runtime = request.sampling, request.runtime
    device = worker_device(runtime.device)
    net = flow_network(model_on(ref, device))
    n_times, n_members, n_out = condition.shape[0], request.ensemble.n_ensemble, settings.n_outputs
    times = flow_times(sampling.num_steps, t_max=net.t_max, shift=net.shift, device=device)
    integrate = flow_heun if sampling.sampler == "heun" else flow_euler
    rows = [(t, m) for t in range(n_times) for m in range(n_members)]
    (y0, x0), (h, w) = settings.origin, settings.out_shape(condition.shape[2:])
    out = np.empty((n_members, n_times, n_out, h, w), np.float32)
    cond_t = torch.from_numpy(np.ascontiguousarray(condition, np.float32)).to(device)
    scalars_t = torch.from_numpy(np.ascontiguousarray(scalars, np.float32)).to(device)
    factor = sampling.noise_scale

    def work(batch: slice) -> None:
        index = torch.tensor([t for t, _ in rows[batch]], device=device)
        generators = member_generators(rows[batch], time_keys, settings, device)
        x = flow_initial_state(generators, (n_out, *condition.shape[2:]), times)
        if factor is not None:
            x = x * torch.tensor(factor, device=device)[:, None, None]
        cond, scal = cond_t[index], scalars_t[index]

        def v(state: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            # one member per forward: a member's numbers do not depend on its batch
            with autocast(device, runtime.precision):
                predicted = torch.cat([
                    net(state[i : i + 1], t[i : i + 1], cond[i : i + 1], scal[i : i + 1])
                    for i in range(state.shape[0])
                ])  # fmt: skip
            return velocity(
                state, predicted.float(), t, prediction=net.prediction, clip=net.x0v_clip
            )

        members = integrate(v, x, times)[..., y0 : y0 + h, x0 : x0 + w].cpu().numpy()
        for k, (t, m) in enumerate(rows[batch]):
            out[m, t] = members[k]

    with torch.inference_mode():
        run_in_batches(
            len(rows), runtime.member_batch_size, work, device=device,
            key=("flow", tuple(condition.shape[1:])),
        )  # fmt: skip
    _check_outputs(out, settings.output_names, "rectified-flow sampler")
    return out
