"""Eager value checks: the explicit, optional side of the NaN/Inf policy.

Pure ops never look at tensor values on the host (they must compile), so they
never raise on NaN or Inf: they handle them deterministically (see the
"NaN and Inf" section of the README). :func:`check_finite` is the explicit
check to call eagerly, e.g. once before pruning or after loading a checkpoint,
when a NaN should stop the run rather than be ranked.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from .errors import NonFiniteError, describe
from .inputs import view_sources
from .layout import write_views
from .specs import View
from .tree import flatten_specs

__all__ = ["check_finite"]

_WHERE = "check_finite"


def _covered(view: View, device: torch.device) -> Tensor:
    """Bool mask of the parameter's elements that ``view`` covers."""
    base = torch.zeros(view.param_shape, dtype=torch.uint8, device=device)
    return write_views(base, [view], [torch.ones(view.shape, dtype=torch.uint8, device=device)]) != 0


def _index(flat: int, shape: Tuple[int, ...]) -> Tuple[int, ...]:
    out = []
    for n in reversed(shape):
        out.append(flat % n)
        flat //= n
    return tuple(reversed(out))


def check_finite(params: Any, spec: Any, *, values: Optional[Any] = None, conditioners: Optional[Any] = None) -> None:
    """Pure (eager only, raises): check that every element a spec covers is finite.

    Checks the elements of ``params`` (and of ``values`` and ``conditioners``,
    if given) that the views of ``spec`` cover; elements outside every view are not ops' inputs
    and are not checked. It reads tensor values on the host (``.item()``), so
    call it eagerly, outside ``torch.compile``. Nothing is modified.

    Args:
        params: Mapping of parameter name to tensor.
        spec: A spec or a spec tree (tuple/list/dict of specs).
        values: Optional mapping keyed like ``params`` (the tensors scored
            instead of the parameters); checked the same way.
        conditioners: Optional mapping keyed like ``params`` (the diagonal
            metric of :func:`~sparsekit_fx.soft_threshold`); checked the same way.

    Raises:
        NonFiniteError: A covered element is NaN, +inf or -inf. The message
            names the mapping and parameter, the number of NaN and Inf
            elements, and the first bad element's index in the parameter.
        SparseKitError: A parameter is missing or mis-shaped (as in the ops).

    Example:
        ``skf.check_finite(dict(model.named_parameters()), tree)`` before
        ``skf.hard_threshold(...)``.
    """
    specs, _ = flatten_specs(spec, _WHERE)
    by_param: Dict[str, List[View]] = {}
    for s in specs:
        view_sources(params, s.views(), _WHERE)
        for arg, m in (("values", values), ("conditioners", conditioners)):
            if m is not None:
                view_sources(params, s.views(), _WHERE, values=m, values_arg=arg)
        for v in s.views():
            vs = by_param.setdefault(v.param, [])
            if v not in vs:
                vs.append(v)
    sources = [(a, m) for a, m in (("params", params), ("values", values), ("conditioners", conditioners))
               if m is not None]
    for arg, mapping in sources:
        for name, views in by_param.items():
            t = mapping[name].detach()
            bad = ~torch.isfinite(t)
            covered = t.numel()
            if not (len(views) == 1 and views[0].is_whole):
                # Views of one parameter from different specs of a tree may overlap: OR them.
                cover = torch.zeros(t.shape, dtype=torch.bool, device=t.device)
                for v in views:
                    cover |= _covered(v, t.device)
                bad &= cover
                covered = int(cover.sum().item())
            count = int(bad.sum().item())
            if count == 0:
                continue
            nan = int((torch.isnan(t) & bad).sum().item())
            first = int(bad.reshape(-1).nonzero()[0, 0].item())
            idx = _index(first, tuple(t.shape))
            value = t.reshape(-1)[first].item()
            raise NonFiniteError(
                describe(
                    _WHERE,
                    f"{arg}[{name!r}]",
                    f"finite values in the {covered} elements the spec covers",
                    f"{count} non-finite ({nan} NaN, {count - nan} Inf); first at index {idx} = {value}",
                    "find where the NaN/Inf came from (learning rate, loss scaling, a bad checkpoint), "
                    "or replace them, e.g. torch.nan_to_num, before pruning.",
                )
            )
