"""The executor behind every public op: spec trees, levels and batched kernels.

An op is a *kernel* plus validation. A kernel is a pure function

    kernel(spec, xs, aux, hyper, want) -> {output: value}

of one spec's view tensors ``xs`` (one per ``spec.views()`` entry), auxiliary
view tensors ``aux`` (``{"values": [...], ...}``), per-spec hyper-parameter
tensors ``hyper`` and the set of outputs wanted. It does no validation and
only tensor math, so it can be ``vmap``-ed. Outputs are ``"x"`` (new view
tensors), ``"mask"`` (uint8 view-shaped keep masks) and ``"keep"`` (one
tensor per spec, e.g. block masks in scope layout).

:func:`run` applies a kernel to a spec tree level by level (see
:mod:`sparsekit_fx.tree`). Within a level, specs with the same layout
signature are stacked and processed by one ``vmap``-ed call, so a compiled
step emits one fused kernel chain per *layout* instead of one per parameter.
Batching can be switched off with :func:`batching` (for debugging or
measuring).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import torch
from torch import Tensor

from .inputs import view_sources
from .layout import by_param, pack_bool, read_view, views_to_param, write_views
from .tree import groups, levels

__all__ = ["run", "batching", "batching_enabled"]

Kernel = Callable[..., Dict[str, Any]]

_BATCH = [True]


def batching_enabled() -> bool:
    """Pure: whether same-layout specs are batched with vmap."""
    return _BATCH[0]


@contextlib.contextmanager
def batching(enabled: bool) -> Iterator[None]:
    """Mutates global state: enable or disable batching of same-layout specs within the block.

    Compiled functions read this at trace time; changing it recompiles them.
    """
    old = _BATCH[0]
    _BATCH[0] = bool(enabled)
    try:
        yield
    finally:
        _BATCH[0] = old


def _stack_hyper(values: List[Any]) -> Any:
    """Shared value (in_dim None) if all specs use one object, else a stacked tensor."""
    first = values[0]
    if all(v is first for v in values):
        return first, None
    shape = torch.broadcast_shapes(*[tuple(v.shape) for v in values])
    return torch.stack([v.expand(shape) for v in values]), 0


def _call_group(kernel: Kernel, specs: Sequence[Any], xs: List[List[Tensor]], aux: List[Dict[str, List[Tensor]]],
                hyper: List[Dict[str, Tensor]], want: frozenset) -> List[Dict[str, Any]]:
    if len(specs) == 1 or not _BATCH[0]:
        return [kernel(s, x, a, h, want) for s, x, a, h in zip(specs, xs, aux, hyper)]
    rep = specs[0]  # kernels use only the layout, which the group shares
    # Always stack, even when an earlier level left these very slices in one batched
    # output: reusing that tensor lets Inductor inline the earlier level's selection
    # into every read of this level (the 2:4 kernel reads each score 7 times), which
    # made the 12-layer step 3x slower than paying for the copy.
    sx = [torch.stack([x[j] for x in xs]) for j in range(len(xs[0]))]
    sa = {k: [torch.stack(col) for col in zip(*[a[k] for a in aux])] for k in aux[0]}
    sh: Dict[str, Tensor] = {}
    dims: Dict[str, Optional[int]] = {}
    for k in hyper[0]:
        sh[k], dims[k] = _stack_hyper([h[k] for h in hyper])
    out = torch.func.vmap(lambda x, a, h: kernel(rep, x, a, h, want), in_dims=(0, 0, dims))(sx, sa, sh)
    return [torch.utils._pytree.tree_map(lambda t: t[i], out) for i in range(len(specs))]


def run(
    params: Any,
    specs: Sequence[Any],
    kernel: Kernel,
    hypers: Sequence[Dict[str, Tensor]],
    *,
    where: str,
    aux: Optional[Dict[str, Any]] = None,
    want: frozenset = frozenset({"x"}),
) -> Dict[str, Any]:
    """Pure: apply ``kernel`` to every spec of a flattened tree, level by level.

    Args:
        params: Mapping of parameter name to tensor (validated here).
        specs: The specs, in tree order.
        kernel: See the module docstring.
        hypers: One dict of hyper-parameter tensors per spec (no ``None``).
        where: Name of the public op, for error messages.
        aux: Optional ``{name: mapping keyed like params}`` of auxiliary
            tensors (``values``, ``conditioners``), validated like params.
        want: Outputs to produce: any of ``"x"``, ``"mask"``, ``"keep"``.

    Returns:
        ``{"params": new params dict}`` if ``"x"`` was produced (untouched
        entries are the input objects), ``{"masks": {name: bool}}`` if
        ``"mask"`` was wanted (the AND over all specs touching a parameter),
        ``{"keep": [per spec]}`` if ``"keep"`` was wanted.
    """
    aux = {k: v for k, v in (aux or {}).items() if v is not None}
    for s in specs:  # validate every spec before computing anything
        view_sources(params, s.views(), where)
        for k, m in aux.items():
            view_sources(params, s.views(), where, values=m, values_arg=k)
    lvls = levels(specs)
    # Later levels need the pruned params of earlier ones.
    inner_want = want | ({"x"} if len(lvls) > 1 else frozenset())
    current = dict(params)
    masks: Dict[str, Tensor] = {}
    keeps: List[Any] = [None] * len(specs)
    for lvl in lvls:
        for grp in _by_dtype(groups(specs, lvl), specs, current, aux):
            gspecs = [specs[i] for i in grp]
            if len(gspecs) == 1 or not _BATCH[0]:  # a batched group's stack already materialises
                for name in {v.param for s in gspecs for v in s.views()}:
                    if current[name] is not params[name]:
                        current[name] = _materialise(current[name])
            xs = [[read_view(current[v.param], v) for v in s.views()] for s in gspecs]
            ax = [{k: [read_view(m[v.param], v) for v in s.views()] for k, m in aux.items()} for s in gspecs]
            outs = _call_group(kernel, gspecs, xs, ax, [hypers[i] for i in grp], inner_want)
            for i, s, out in zip(grp, gspecs, outs):
                if "x" in out:
                    for name, vs, nx in by_param(s.views(), out["x"]):
                        current[name] = write_views(current[name], vs, nx)
                if "mask" in want:
                    for name, vs, ms in by_param(s.views(), out["mask"]):
                        m = views_to_param(vs, ms, 1)
                        masks[name] = m if name not in masks else _u8(masks[name]) & _u8(m)
                if "keep" in want:
                    keeps[i] = out["keep"]
    result: Dict[str, Any] = {}
    if "x" in want:
        result["params"] = current
    if "mask" in want:
        # Masks stay uint8 until here: Inductor's CPU code for bool tensors is slow
        # (and cannot vectorise some bool ops). Eagerly, viewing uint8 0/1 as bool
        # is free; under compile, packing 4 flags per int32 word lets Inductor
        # write the mask with vector stores instead of byte by byte.
        # Bool masks come from single-element blocks, already as compact as they get.
        pack = pack_bool if torch.compiler.is_compiling() else (lambda m: m.view(torch.bool))
        result["masks"] = {k: m if m.dtype == torch.bool else pack(m) for k, m in masks.items()}
    if "keep" in want:
        result["keep"] = keeps
    return result


def _clone(t: Tensor) -> Tensor:
    """A copy of ``t`` that compilers cannot see through once registered as an opaque op."""
    return t.clone()


_OPAQUE: Any = None
if hasattr(torch.library, "custom_op") and hasattr(torch.library.CustomOpDef, "register_vmap"):  # torch >= 2.5
    _OPAQUE = torch.library.custom_op("sparsekit_fx::materialise", mutates_args=())(_clone)
    _OPAQUE.register_fake(lambda t: torch.empty_like(t))
    _OPAQUE.register_vmap(lambda info, in_dims, t: (_OPAQUE(t), in_dims[0]))


def _materialise(t: Tensor) -> Tensor:
    """Pure: ``t``, stored to memory under ``torch.compile`` before a later level reads it.

    Without this, Inductor inlines an earlier level's selection into every read
    a later level makes of its output; the fused 2:4 kernel reads each score
    seven times, each read then redoing the earlier level's index arithmetic as
    scalar code (a one-layer channel + 2:4 tree took 5x the time of its halves).
    An opaque op forces a buffer. Batched groups need none: their stack is one.
    Skipped outside compile and for tensors that need gradients.
    """
    if _OPAQUE is None or not torch.compiler.is_compiling() or t.requires_grad:
        return t
    return _OPAQUE(t)


def _u8(m: Tensor) -> Tensor:
    """Pure: a 0/1 mask as uint8 (free for bool): Inductor's CPU code cannot vectorise ``bool & bool``."""
    return m.view(torch.uint8) if m.dtype == torch.bool else m


def _by_dtype(grps: List[List[int]], specs: Sequence[Any], current: Dict[str, Tensor],
              aux: Dict[str, Any]) -> List[List[int]]:
    """Split layout groups so that stacked specs share dtypes and devices.

    Stacking tensors of different dtypes would promote them (a float16
    parameter would come back as float32), and of different devices would fail.
    """
    out: List[List[int]] = []
    for grp in grps:
        sub: Dict[Any, List[int]] = {}
        for i in grp:
            key = tuple((m[v.param].dtype, m[v.param].device) for m in (current, *aux.values())
                        for v in specs[i].views())
            sub.setdefault(key, []).append(i)
        out.extend(sub.values())
    return out

