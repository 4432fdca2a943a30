"""Functional Adam followed by the group-lasso prox in Adam's own metric.

One step of :func:`prox_adam_step` is ``torch.optim.Adam``'s update (same
formulas, same bias corrections, L2 or decoupled weight decay) followed by
:func:`~sparsekit_fx.prox_ops.soft_threshold` with conditioner
``sqrt(v_hat) + eps`` (Adam's denominator) and threshold ``lr * lam``, i.e.
the exact minimiser of Adam's local quadratic model plus
``lam * sum ||block||_2``. State is a :class:`ProxAdamState` NamedTuple (a
pytree), created by :func:`prox_adam_init`; nothing is mutated, so a training
step ``grad -> prox_adam_step`` compiles as one graph and every
hyper-parameter may be a tensor that changes without recompiling.

For eager training with ``torch.optim.Adam``, :func:`adam_conditioners`
reads the same metric from the optimiser's state; apply the prox after
``opt.step()`` and write the result back::

    opt.step()
    params = dict(model.named_parameters())
    h = skf.adam_conditioners(opt, params, names=spec.params())
    with torch.no_grad():
        new = skf.soft_threshold(params, spec, opt.param_groups[0]["lr"] * lam, conditioners=h)
    skf.write_through_(model, new)
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .errors import ArgumentError, CouplingError, ParamError, ShapeMismatchError, SpecError, describe
from .inputs import check_mapping, check_param
from .prox_ops import soft_threshold
from .specs import BlockCoupling, BlockSpec, ScopeCoupling, ScopeSpec, View, _views_overlap

__all__ = ["ProxAdamState", "prox_adam_init", "prox_adam_step", "adam_conditioners"]

_WHERE = "prox_adam_step"
_SPECS = (BlockSpec, BlockCoupling, ScopeSpec, ScopeCoupling)


class ProxAdamState(NamedTuple):
    """Adam's state for :func:`prox_adam_step`, a pytree of tensors.

    Attributes:
        step: 0-d float32 tensor, the number of updates applied so far.
        exp_avg: First moments, keyed like the optimised params.
        exp_avg_sq: Second moments, keyed like the optimised params.
    """

    step: Tensor
    exp_avg: Dict[str, Tensor]
    exp_avg_sq: Dict[str, Tensor]


def prox_adam_init(params: Any) -> ProxAdamState:
    """Pure: a zero state for every entry of ``params`` (step 0).

    Args:
        params: Mapping of parameter name to floating tensor; the names here
            are the ones :func:`prox_adam_step` updates.

    Returns:
        A :class:`ProxAdamState` with zero moments shaped like the params.
    """
    check_mapping(params, "prox_adam_init", "params", "pass dict(model.named_parameters()).")
    for name, p in params.items():
        if not isinstance(p, Tensor) or not p.is_floating_point():
            got = p.dtype if isinstance(p, Tensor) else type(p).__name__
            raise ParamError(describe("prox_adam_init", f"params[{name!r}]", "a floating-point tensor", got,
                                      "optimise floating-point tensors only."))
    device = next((p.device for p in params.values()), None)
    step = torch.zeros((), dtype=torch.float32, device=device)
    zeros = {k: torch.zeros_like(p, memory_format=torch.preserve_format).detach() for k, p in params.items()}
    return ProxAdamState(step, zeros, {k: torch.zeros_like(v) for k, v in zeros.items()})


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


def _hyper(value: Any, name: str, lo: float, hi: Optional[float] = None) -> Any:
    """Python numbers are range-checked; tensors pass through (values are never read)."""
    if isinstance(value, Tensor):
        if value.ndim != 0 or not value.is_floating_point():
            raise ArgumentError(describe(_WHERE, name, "a number or a 0-d float tensor",
                                         f"tensor of shape {tuple(value.shape)} and dtype {value.dtype}",
                                         f"pass {name} as a float or torch.tensor(value)."))
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentError(describe(_WHERE, name, "a number or a 0-d float tensor", repr(value),
                                     f"pass {name} as a float or a 0-d tensor."))
    v = float(value)
    ok = v >= lo and (hi is None or v < hi)
    if not ok:
        rng = f"in [{lo}, {hi})" if hi is not None else f">= {lo}"
        raise ArgumentError(describe(_WHERE, name, f"a number {rng}", v, f"choose {name} {rng}."))
    return v


def _as_specs(spec: Any) -> Tuple[Any, ...]:
    specs = tuple(spec) if isinstance(spec, (tuple, list)) else (spec,)
    for i, s in enumerate(specs):
        if not isinstance(s, _SPECS):
            arg = "spec" if len(specs) == 1 and not isinstance(spec, (tuple, list)) else f"spec[{i}]"
            raise SpecError(describe(_WHERE, arg, "a BlockSpec, BlockCoupling, ScopeSpec or ScopeCoupling "
                                     "(or a tuple/list of them, or None)", type(s).__name__,
                                     "build specs first, e.g. BlockSpec(View.of(name, w), (1, 64))."))
    return specs


def _check_disjoint_specs(specs: Sequence[Any]) -> None:
    """Refuse two specs of one step that share an element (their proxes would compose)."""
    owner: Dict[str, List[Tuple[int, View]]] = {}
    for i, s in enumerate(specs):
        for v in s.views():
            owner.setdefault(v.param, []).append((i, v))
    for name, vs in owner.items():
        for x in range(len(vs)):
            for y in range(x + 1, len(vs)):
                (i, a), (j, b) = vs[x], vs[y]
                if i == j:
                    continue  # within one spec, construction already checked
                lo, hi = max(a.span[0], b.span[0]), min(a.span[1], b.span[1])
                if lo >= hi:
                    continue
                exact = a.geometry.dense and b.geometry.dense or a == b
                if not exact and torch.compiler.is_compiling():
                    continue  # the exact test needs eager tensors; eager calls run it
                if exact or _views_overlap(a, b):
                    raise CouplingError(
                        describe(_WHERE, "spec", "specs touching disjoint elements",
                                 f"spec[{i}] and spec[{j}] share elements of {name!r}",
                                 "merge them into one coupling, or cut the parameter into disjoint views."))


def _lams(lam: Any, n: int) -> List[Any]:
    if isinstance(lam, (tuple, list)):
        if len(lam) != n:
            raise ArgumentError(describe(_WHERE, "lam", f"one value, or one per spec ({n})", f"{len(lam)} values",
                                         "pass a single lam or a tuple with one entry per spec."))
        items = list(lam)
    else:
        items = [lam] * n
    for i, x in enumerate(items):
        arg = "lam" if not isinstance(lam, (tuple, list)) else f"lam[{i}]"
        if isinstance(x, Tensor):
            if not x.is_floating_point():
                raise ArgumentError(describe(_WHERE, arg, "a float tensor", x.dtype, "cast lam to float."))
        elif isinstance(x, bool) or not isinstance(x, numbers.Real) or not float(x) >= 0:
            raise ArgumentError(describe(_WHERE, arg, "a number >= 0 or a float tensor", repr(x),
                                         "pass e.g. lam=1e-4."))
    return items


def _check_state(params: Any, grads: Any, state: Any) -> None:
    check_mapping(params, _WHERE, "params", "pass dict(model.named_parameters()).")
    if not isinstance(state, ProxAdamState):
        raise ArgumentError(describe(_WHERE, "state", "a ProxAdamState", type(state).__name__,
                                     "create it with prox_adam_init(params) and pass back the returned state."))
    check_mapping(grads, _WHERE, "grads", "pass the gradients keyed like params, e.g. torch.func.grad(loss)(params).")
    for name in state.exp_avg:
        for arg, m in (("params", params), ("grads", grads)):
            if name not in m:
                raise ParamError(describe(_WHERE, arg, f"an entry {name!r} (held by the state)",
                                          f"keys {sorted(m)[:8]}", f"add {name!r} to {arg}, or re-create the state "
                                          "with prox_adam_init on the params you optimise."))
        p = check_param(params, name, None, _WHERE, "params")  # a floating tensor (no integer/bool params)
        g = check_param(grads, name, None, _WHERE, "grads")
        if tuple(g.shape) != tuple(p.shape):
            got = tuple(g.shape)
            raise ShapeMismatchError(describe(_WHERE, f"grads[{name!r}]", f"a tensor of shape {tuple(p.shape)}",
                                              got, "pass the gradient of each parameter, same shape."))
        if tuple(state.exp_avg[name].shape) != tuple(p.shape):
            raise ShapeMismatchError(describe(_WHERE, f"state.exp_avg[{name!r}]", f"shape {tuple(p.shape)}",
                                              tuple(state.exp_avg[name].shape),
                                              "re-create the state with prox_adam_init(params)."))


# ---------------------------------------------------------------------------
# the step
# ---------------------------------------------------------------------------


def prox_adam_step(
    params: Any,
    grads: Any,
    state: ProxAdamState,
    spec: Any,
    *,
    lr: Any = 1e-3,
    lam: Any = 0.0,
    betas: Tuple[Any, Any] = (0.9, 0.999),
    eps: Any = 1e-8,
    weight_decay: Any = 0.0,
    decoupled_weight_decay: bool = False,
    step: Any = None,
    scale: bool = False,
    passes: Optional[int] = None,
) -> Tuple[Dict[str, Tensor], ProxAdamState]:
    """Pure: one Adam step, then the group-lasso prox in Adam's metric.

    The Adam part matches ``torch.optim.Adam`` (``amsgrad=False``,
    ``maximize=False``): L2 weight decay added to the gradient, or AdamW's
    decoupled decay when ``decoupled_weight_decay``. Then, for every spec,
    :func:`~sparsekit_fx.prox_ops.soft_threshold` with
    ``conditioners = sqrt(v_hat) + eps`` (the Adam denominator) and
    ``thresholds = lr * lam``, which minimises Adam's quadratic model plus
    ``lam * sum_blocks ||block||_2`` exactly.

    Args:
        params: Mapping of parameter name to tensor. Only names held by
            ``state`` are updated; other entries are passed through.
        grads: Gradients keyed like params (at least every state name).
        state: The :class:`ProxAdamState` from :func:`prox_adam_init` or the
            previous step.
        spec: A BlockSpec, BlockCoupling, ScopeSpec or ScopeCoupling; or a
            tuple/list of them touching disjoint elements (each is applied to
            its own blocks; since they are disjoint, the order does not
            matter); or ``None`` / ``()`` for plain Adam. Parameters no spec
            touches get plain Adam.
        lr: Learning rate (number or 0-d tensor).
        lam: Group-lasso strength: a number, a 0-d tensor, a tensor of the
            spec's grid shape (as ``thresholds`` of ``soft_threshold``), or a
            tuple/list with one such entry per spec.
        betas: ``(beta1, beta2)``, numbers or 0-d tensors.
        eps: Adam's epsilon (number or 0-d tensor).
        weight_decay: Number or 0-d tensor.
        decoupled_weight_decay: Use AdamW's ``p *= 1 - lr * weight_decay``.
        step: The 1-based index of this update, used for bias correction
            (number or tensor); default ``state.step + 1``.
        scale: Passed to ``soft_threshold`` (thresholds times
            ``sqrt(numel_per_block)``).
        passes: Solver passes of the preconditioned prox (``None``: the
            dtype's default, see ``soft_threshold``).

    Returns:
        ``(new_params, new_state)``: a new dict with the same keys as
        ``params`` (entries not in the state are the same objects) and the
        new state. Nothing is modified in place. Any tensor hyper-parameter
        may change between calls without recompiling a compiled step.

    Raises:
        SparseKitError: Mismatched mappings or state, bad hyper-parameters,
            specs that are not specs, overlap or touch unoptimised params.
    """
    _check_state(params, grads, state)
    specs = () if spec is None else _as_specs(spec)
    _check_disjoint_specs(specs)
    lams = _lams(lam, len(specs))
    lr = _hyper(lr, "lr", 0.0)
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ArgumentError(describe(_WHERE, "betas", "a pair (beta1, beta2)", repr(betas), "pass e.g. (0.9, 0.999)."))
    beta1 = _hyper(betas[0], "betas[0]", 0.0, 1.0)
    beta2 = _hyper(betas[1], "betas[1]", 0.0, 1.0)
    eps = _hyper(eps, "eps", 0.0)
    weight_decay = _hyper(weight_decay, "weight_decay", 0.0)
    for s in specs:
        for name in s.params():
            if name not in state.exp_avg:
                raise ParamError(describe(_WHERE, "spec", f"parameters held by the state ({sorted(state.exp_avg)[:8]})",
                                          repr(name), f"include {name!r} in prox_adam_init(params), or drop it "
                                          "from the spec."))

    t = state.step + 1 if step is None else step
    t = torch.as_tensor(t, dtype=torch.float64, device=state.step.device)
    bc1 = 1 - torch.as_tensor(beta1, dtype=torch.float64, device=t.device) ** t
    bc2 = 1 - torch.as_tensor(beta2, dtype=torch.float64, device=t.device) ** t
    step_size = lr / bc1
    bc2_sqrt = torch.sqrt(bc2)

    new_params = dict(params)
    m_new: Dict[str, Tensor] = {}
    v_new: Dict[str, Tensor] = {}
    denoms: Dict[str, Tensor] = {}
    for name in state.exp_avg:
        p, g = params[name], grads[name]
        if decoupled_weight_decay:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = torch.lerp(state.exp_avg[name], g, (1 - beta1) if isinstance(beta1, Tensor) else 1 - beta1)
        v = state.exp_avg_sq[name] * beta2 + (1 - beta2) * g * g
        denom = torch.sqrt(v) / bc2_sqrt.to(v.dtype) + eps
        new_params[name] = p - step_size.to(p.dtype) * m / denom
        m_new[name], v_new[name], denoms[name] = m, v, denom

    if specs:
        # One call over the whole tree, so same-layout specs are batched. A Python
        # float threshold stays one: soft_threshold makes it a tensor of the params' dtype.
        thr = tuple(lr * lm for lm in lams)
        new_params = soft_threshold(new_params, tuple(specs), thr, conditioners=denoms, scale=scale, passes=passes)
    return new_params, ProxAdamState(t.to(state.step.dtype), m_new, v_new)


# ---------------------------------------------------------------------------
# eager helper for torch.optim.Adam
# ---------------------------------------------------------------------------


def adam_conditioners(optimizer: Any, params: Any, names: Optional[Iterable[str]] = None) -> Dict[str, Tensor]:
    """Pure: Adam's diagonal metric ``sqrt(v_hat) + eps`` read from a ``torch.optim`` Adam/AdamW.

    Uses each parameter's group ``betas``/``eps`` and its state's ``step``
    and ``exp_avg_sq`` (``max_exp_avg_sq`` with ``amsgrad``), exactly as the
    optimiser's own denominator. The optimiser is not modified.

    Args:
        optimizer: A ``torch.optim.Adam`` or ``AdamW`` (anything whose state
            holds ``exp_avg_sq`` and ``step``) that has taken a step.
        params: An ``nn.Module`` or a mapping of name -> the optimised
            Parameter objects (matched by identity).
        names: Names that must be present in the result (e.g.
            ``spec.params()``); default: every named parameter that has
            optimiser state.

    Returns:
        ``{name: Tensor}`` keyed like ``params``, ready for
        ``soft_threshold(..., conditioners=...)`` with thresholds
        ``lr * lam``.

    Raises:
        ParamError: ``params`` is not a module or mapping, or a requested
            name is unknown, not optimised, or has no state yet.
    """
    where = "adam_conditioners"
    named = dict(params.named_parameters()) if isinstance(params, nn.Module) else params
    if not isinstance(named, Mapping):
        raise ParamError(describe(where, "params", "an nn.Module or a mapping of name -> Parameter",
                                  type(params).__name__, "pass the model or dict(model.named_parameters())."))
    groups = {id(p): g for g in getattr(optimizer, "param_groups", []) for p in g["params"]}
    wanted = None if names is None else list(names)
    out: Dict[str, Tensor] = {}
    with torch.no_grad():
        for name in (named if wanted is None else wanted):
            if name not in named:
                raise ParamError(describe(where, "names", "names of params", repr(name),
                                          f"use keys of params, e.g. {sorted(named)[:4]}."))
            p = named[name]
            st = optimizer.state.get(p, {}) if id(p) in groups else {}
            key = "max_exp_avg_sq" if groups.get(id(p), {}).get("amsgrad") else "exp_avg_sq"
            if key not in st or "step" not in st:
                if wanted is None:
                    continue
                why = "not optimised by this optimizer" if id(p) not in groups else "without Adam state yet"
                raise ParamError(describe(where, f"params[{name!r}]", "a parameter with Adam state "
                                          "(exp_avg_sq and step)", why,
                                          "call optimizer.step() first, and pass the parameters the optimizer holds."))
            group = groups[id(p)]
            beta2 = group["betas"][1]
            step = st["step"]
            step = float(step.item()) if isinstance(step, Tensor) else float(step)
            bc2 = 1 - beta2 ** step
            bc2 = float(bc2.item()) if isinstance(bc2, Tensor) else bc2
            out[name] = st[key].sqrt() / bc2 ** 0.5 + group["eps"]
    return out
