"""The regression's input skip: an output predicted as its own input plus a learned correction.

CorrDiff's regression predicts each output field whole from the normalized inputs. On a
short record (a few days) such a network can learn each training day's level instead of
the mapping from input to output, and a new day's mean comes out wrong by as much as the
days differ (``asv_benchmarks/real_skill.py``: −1.0 to −1.2 K on the held-out day,
depending on the training seed). With the skip, an output that is also an input (same
name, same units and transform) is predicted as that input, regridded onto the HR grid,
plus the network's correction, so the large scales come from the input and the network
learns only what the interpolation misses.

In normalized units (input statistics ``(m_i, s_i)``, output ``(m_o, s_o)``) the skipped
output channel is

.. math::

    \\mu = \\frac{s_i x + m_i - m_o}{s_o} + \\gamma \\, f(x),

with ``γ`` the standard deviation of the target's departure from the first term over the
training times (so the network's output, like its target, has unit scale), and the
regression loss of that channel divided by ``γ²`` (the loss of the correction in its own
units, as for every other output). Outputs without a matching input keep ``μ = f(x)``.
The model stores ``{output: {"input": name, "spread": γ}}`` in its ``conditioning``; the
other constants come from its normalizers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["InputSkip"]


@dataclass(frozen=True)
class InputSkip:
    """The skip of each output channel, as tensors (see the module docstring).

    ``channel[k]`` is the condition channel output ``k`` takes (``-1``: none); ``scale`` and
    ``offset`` map that channel into the output's normalized units; ``spread`` multiplies
    the network's output (1 where there is no skip).
    """

    channel: torch.Tensor
    scale: torch.Tensor
    offset: torch.Tensor
    spread: torch.Tensor

    @classmethod
    def build(
        cls,
        spec: Mapping[str, Mapping[str, Any]],
        *,
        condition_variables: Sequence[str],
        output_variables: Sequence[str],
        input_normalizer: Any,
        output_normalizer: Any,
    ) -> InputSkip:
        """From the stored ``{output: {"input": name, "spread": γ}}`` and the normalizers."""
        rows = []  # (channel, scale, offset, spread) of each output
        for name in output_variables:
            entry = spec.get(name)
            if entry is None:
                rows.append((-1, 0.0, 0.0, 1.0))
                continue
            source = str(entry["input"])
            i, o = input_normalizer.stats[source], output_normalizer.stats[name]
            rows.append(
                (
                    list(condition_variables).index(source),
                    i.std / o.std,
                    (i.mean - o.mean) / o.std,
                    float(entry["spread"]),
                )
            )
        channel, scale, offset, spread = zip(*rows, strict=True)
        as64 = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
        return cls(torch.tensor(channel), as64(scale), as64(offset), as64(spread))

    def base(self, inputs: torch.Tensor) -> torch.Tensor:
        """The skipped part ``(rows, C_out, h, w)`` of μ: each output's own input, mapped into
        its normalized units (0 for outputs without one)."""
        taken = inputs[:, self.channel.clamp_min(0)].double()
        shape = (1, -1, 1, 1)
        value = taken * self.scale.to(inputs.device).view(shape)
        value = value + self.offset.to(inputs.device).view(shape)
        return value * (self.channel >= 0).to(inputs.device).view(shape)

    def apply(self, correction: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """μ from the network's output ``correction`` and the condition's ``inputs``."""
        spread = self.spread.to(correction.device).view(1, -1, 1, 1)
        return (self.base(inputs) + spread * correction.double()).to(correction.dtype)

    def loss_weight(self, like: torch.Tensor) -> torch.Tensor:
        """``1 / γ²`` per output channel, shaped to multiply a ``(rows, C_out, h, w)`` loss."""
        return (1.0 / self.spread**2).to(like).view(1, -1, 1, 1)
