"""Linear interpolation between fine-tuned models (Section 3.1 of the paper).

Eq. 1  θ(α) = α·θ_bi + (1−α)·θ_src
Eq. 2  θ(α) = α·θ_bi + (1−α)·θ_tgt
Eq. 3  θ(α1, α2) = θ_bi + α1·δ_src + α2·δ_tgt,   δ_x = θ_x − θ_bi

All three are points of one plane: Eq. 1 is (α1, α2) = (1−α, 0), Eq. 2 is (0, 1−α).
`InterpolationPlane` keeps θ_bi, θ_src and θ_tgt on the device once and writes each
point into the model's own parameters in place as

    θ(α1, α2) = (1 − α1 − α2)·θ_bi + α1·θ_src + α2·θ_tgt,

which is Eq. 3 rearranged. This form makes the end-points exact: (0, 0), (1, 0) and
(0, 1) reproduce θ_bi, θ_src and θ_tgt bit for bit (adding δ back onto θ_bi would round).
Where Eq. 1 and Eq. 2 sit in the plane is `sweep_spec.plane_coordinates`; the norms and
angle of δ_src and δ_tgt are in `geometry.py`.
"""

from __future__ import annotations

import torch

from .model import TaskModel
from .settings import SCOPES


class IncompatibleEndpoints(ValueError):
    """The end-points of a sweep do not share architecture, tokenizer or head shape."""


def check_compatible(states: dict[str, dict[str, torch.Tensor]]) -> None:
    """Raise IncompatibleEndpoints naming the first parameter in which the state dicts
    (name → {param name → tensor}) differ in presence, shape or dtype."""
    (first_name, first), *others = states.items()
    for other_name, other in others:
        # Model order, so "first" means the first parameter of the network that differs.
        for key in [*first, *(k for k in other if k not in first)]:
            if key not in other or key not in first:
                where = other_name if key not in other else first_name
                raise IncompatibleEndpoints(f"parameter {key!r} is missing from {where}")
            a, b = first[key], other[key]
            if a.shape != b.shape or a.dtype != b.dtype:
                raise IncompatibleEndpoints(
                    f"parameter {key!r} differs: {first_name} has {tuple(a.shape)} {a.dtype}, "
                    f"{other_name} has {tuple(b.shape)} {b.dtype}"
                )


def interpolated_names(state: dict[str, torch.Tensor], scope: str) -> list[str]:
    """Return the names in `state` (a state dict) of the floating-point tensors that `scope`
    interpolates: all of them, those of the encoder (`encoder.*`) or of the head (`head.*`).

    Integer buffers (e.g. `position_ids`) are never interpolated.
    """
    if scope not in SCOPES:
        raise ValueError(f"scope={scope!r}: expected one of {SCOPES}")
    names = []
    for name, tensor in state.items():
        if not tensor.is_floating_point():
            continue
        if scope == "encoder" and not name.startswith("encoder."):
            continue
        if scope == "head" and not name.startswith("head."):
            continue
        names.append(name)
    return names


class InterpolationPlane:
    """The plane through θ_bi, θ_src, θ_tgt, written into `model` point by point.

    Parameters outside `scope` stay at θ_bi. Memory: three extra copies of the
    interpolated tensors on `device`.
    """

    def __init__(self, model: TaskModel, theta_bi: dict, theta_src: dict, theta_tgt: dict,
                 *, scope: str = "all", device: str | torch.device = "cpu"):
        check_compatible({"θ_bi": theta_bi, "θ_src": theta_src, "θ_tgt": theta_tgt})
        check_compatible({"model": model.state_dict(), "θ_bi": theta_bi})
        self.model = model.to(device)
        self.scope = scope
        # Everything starts at θ_bi; only the scope's tensors move afterwards.
        model.load_state_dict(theta_bi, strict=True)
        live = model.state_dict(keep_vars=True)
        self.names = interpolated_names(live, scope)
        self._targets = [live[n].data if hasattr(live[n], "data") else live[n]
                         for n in self.names]
        def put(state):
            return [state[n].to(device=device, dtype=torch.float32) for n in self.names]

        self._bi, self._src, self._tgt = put(theta_bi), put(theta_src), put(theta_tgt)
        self.point: tuple[float, float] | None = (0.0, 0.0)

    @torch.no_grad()
    def set_point(self, alpha1: float, alpha2: float) -> None:
        """Write θ(α1, α2) into the model's parameters in place."""
        c0 = 1.0 - alpha1 - alpha2
        tgt = self._targets
        # _foreach kernels do each step for all tensors in a few launches on a GPU.
        torch._foreach_copy_(tgt, self._bi)
        if c0 != 1.0:
            torch._foreach_mul_(tgt, c0)
        if alpha1 != 0.0:
            torch._foreach_add_(tgt, self._src, alpha=alpha1)
        if alpha2 != 0.0:
            torch._foreach_add_(tgt, self._tgt, alpha=alpha2)
        self.point = (alpha1, alpha2)

