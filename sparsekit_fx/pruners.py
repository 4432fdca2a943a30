"""Peer parity: the pruning recipes users know, as pure functions over specs.

Every function here builds a spec and calls the public ops
(:func:`~sparsekit_fx.ops.masks`, :func:`~sparsekit_fx.stats.block_mean`,
:func:`~sparsekit_fx.stats.scope_scores`); nothing re-implements selection.
All return ``{name: BoolTensor[param shape]}`` masks, True = kept, and leave
their inputs unchanged; apply them with :func:`~sparsekit_fx.ops.apply_masks`.

* :func:`n_m_spec` -- N:M sparsity along any axis (jaxpruner's ``NByM``).
* :func:`weight_norm_spec`, :func:`weight_norm_masks` --
  ``torch.ao.pruning.WeightNormSparsifier``, reproduced exactly.
* :func:`l1_unstructured`, :func:`random_unstructured`,
  :func:`ln_structured`, :func:`global_unstructured` --
  ``torch.nn.utils.prune``'s functions, with its ``amount`` semantics.

Ties. The library's rule is "lower index wins" (in the scope's flattened
order). PyTorch's peers select with ``torch.topk`` on CPU, whose choice
among equal values comes from ``std::nth_element``/``std::partial_sort`` and
follows no index rule (ten equal zeros, k=2 may give indices 7 and 9). So:

* :func:`weight_norm_masks` has ``ties="torch"`` (default): it computes the
  peer's scores bit for bit and lets ``torch.topk`` pick the zeroed blocks
  among them, which reproduces the peer's masks exactly, ties included
  (tested on CPU; elsewhere it calls that device's topk, like the peer).
  ``ties="index"`` uses the
  library's rule instead and also accepts a tensor ``sparsity_level``.
* The ``torch.nn.utils.prune`` helpers use the library's rule: they equal
  PyTorch on data without ties at the cut, and on tied data they keep the
  lower flat index (PyTorch keeps an unspecified subset of the same size).
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .errors import ArgumentError, ShapeMismatchError, describe
from .inputs import check_param
from .layout import to_blocks
from .ops import masks
from .specs import BlockSpec, ScopeCoupling, ScopeSpec, View
from .stats import block_mean

__all__ = [
    "n_m_spec",
    "weight_norm_spec",
    "weight_norm_masks",
    "l1_unstructured",
    "random_unstructured",
    "ln_structured",
    "global_unstructured",
]

Names = Union[str, Sequence[str]]


# ---------------------------------------------------------------------------
# small argument helpers
# ---------------------------------------------------------------------------


def _int(value: Any, where: str, arg: str, lo: int, hi: Optional[int] = None) -> int:
    ok = not isinstance(value, bool)
    try:
        v = operator.index(value) if ok else None
    except TypeError:
        v = None
    if v is None or v < lo or (hi is not None and v > hi):
        rng = f"an int in [{lo}, {hi}]" if hi is not None else f"an int >= {lo}"
        raise ArgumentError(describe(where, arg, rng, repr(value), f"pass {arg} as {rng}."))
    return v


def _axis(axis: Any, ndim: int, where: str, arg: str = "axis") -> int:
    a = _int(axis, where, arg, -ndim, ndim - 1) if ndim > 0 else None
    if a is None:
        raise ArgumentError(describe(where, arg, "a dim of a tensor with at least one dim", ndim,
                                     "prune a tensor with at least one dim."))
    return a % ndim


def _names(names: Names, where: str) -> Tuple[str, ...]:
    out = (names,) if isinstance(names, str) else tuple(names) if isinstance(names, (list, tuple)) else None
    if not out or not all(isinstance(n, str) for n in out):
        raise ArgumentError(describe(where, "names", "a parameter name or a non-empty sequence of names",
                                     repr(names), "pass e.g. 'fc1.weight' or ['fc1.weight', 'fc2.weight']."))
    if len(set(out)) != len(out):
        raise ArgumentError(describe(where, "names", "distinct names", out, "list each parameter once."))
    return out


def _shape(params: Any, name: str, where: str) -> Tuple[int, ...]:
    return tuple(check_param(params, name, None, where, "params").shape)


def _nnz_from_amount(amount: Any, n: int, where: str) -> Any:
    """``n`` minus the units pruned, with ``torch.nn.utils.prune``'s ``amount`` rules.

    An int is a count (``0 <= amount <= n``); a float is a fraction in
    ``[0, 1]`` rounded with Python's ``round`` (half to even). An integer
    tensor is a count and a float tensor a fraction (``torch.round`` also
    rounds half to even; use float64 for bit-identical products); tensors are
    clamped, never read.
    """
    if isinstance(amount, Tensor):
        if amount.ndim != 0 or amount.dtype == torch.bool or amount.is_complex():
            raise ArgumentError(describe(where, "amount", "a 0-d integer or float tensor",
                                         f"{amount.dtype} of shape {tuple(amount.shape)}",
                                         "pass torch.tensor(0.5) (fraction) or torch.tensor(3) (count)."))
        if amount.is_floating_point():
            pruned = torch.round(amount.to(torch.float64).clamp(0.0, 1.0) * n).to(torch.int64)
        else:
            pruned = amount.to(torch.int64).clamp(0, n)
        return n - pruned
    if isinstance(amount, bool) or not isinstance(amount, numbers.Real):
        raise ArgumentError(describe(where, "amount", "an int (count) or a float in [0, 1] (fraction)",
                                     repr(amount), "pass e.g. amount=0.3 or amount=10."))
    if isinstance(amount, numbers.Integral):
        pruned = _int(amount, where, "amount", 0, n)
    else:
        if not 0.0 <= float(amount) <= 1.0:
            raise ArgumentError(describe(where, "amount", "a float fraction in [0, 1] (or an int count)",
                                         amount, "pass a fraction between 0 and 1."))
        pruned = round(float(amount) * n)
    return n - pruned


def _flat_scope(name: str, shape: Tuple[int, ...]) -> ScopeSpec:
    """One scope over every element of a parameter, in row-major order, as a 1-D grid."""
    n = math.prod(shape)
    return ScopeSpec(BlockSpec(View(name, shape, (n,)), (1,)), ())


# ---------------------------------------------------------------------------
# N:M
# ---------------------------------------------------------------------------


def n_m_spec(name: str, shape: Sequence[int], m: int, *, axis: int = -1) -> ScopeSpec:
    """Pure: the N:M layout -- groups of ``m`` consecutive elements along ``axis``.

    Specs hold layout only: ``n`` is the budget passed to the op, e.g.
    ``masks(params, n_m_spec("w", w.shape, 4), nnz=2)`` for 2:4. Each group
    keeps exactly ``nnz`` elements, the largest in magnitude, ties to the
    lower index along ``axis`` (jaxpruner's ``NByM`` keeps the higher).

    Args:
        name: Parameter name.
        shape: Parameter shape.
        m: Group size; must divide ``shape[axis]``.
        axis: The dim the groups run along (any dim, negative allowed).

    Returns:
        ``ScopeSpec(BlockSpec(View(name, shape), ()), (1, ..., m, ..., 1))``.

    Raises:
        ArgumentError: ``m`` or ``axis`` is invalid.
        ShapeMismatchError: ``m`` does not divide ``shape[axis]``.
    """
    where = f"n_m_spec(name={name!r})"
    view = View(name, tuple(shape))
    a = _axis(axis, view.ndim, where)
    m = _int(m, where, "m", 1)
    if view.shape[a] % m != 0:
        raise ShapeMismatchError(
            describe(where, "m", f"a group size dividing shape[{a}] = {view.shape[a]}", m,
                     "choose M dividing that dim, prune along another axis, or prune a View that leaves out the tail.")
        )
    scope = [1] * view.ndim
    scope[a] = m
    return ScopeSpec(BlockSpec(view, ()), tuple(scope), name=f"N:{m}")


# ---------------------------------------------------------------------------
# WeightNormSparsifier
# ---------------------------------------------------------------------------


def weight_norm_spec(name: str, shape: Sequence[int], sparse_block_shape: Sequence[int] = (1, 4)) -> ScopeSpec:
    """Pure: WeightNormSparsifier's layout -- one scope over all (padded) blocks of a 2-D parameter.

    Blocks start at index 0; when ``sparse_block_shape`` does not divide the
    shape, the last row/column of blocks is partial (``pad=True``).
    """
    where = f"weight_norm_spec(name={name!r})"
    shape = tuple(shape)
    if len(shape) != 2:
        raise ShapeMismatchError(describe(where, "shape", "a 2-D parameter shape (WeightNormSparsifier's rows x cols)",
                                          shape, "prune 2-D weights, or build a View that shows the weight as 2-D."))
    block = _block_shape(sparse_block_shape, where)
    return ScopeSpec(BlockSpec(View(name, shape), block, pad=True, name=name), ())


def _block_shape(sparse_block_shape: Any, where: str) -> Tuple[int, int]:
    try:
        bs = tuple(sparse_block_shape)
    except TypeError:
        bs = ()
    if len(bs) != 2:
        raise ArgumentError(describe(where, "sparse_block_shape", "(block_rows, block_cols)", repr(sparse_block_shape),
                                     "pass two positive ints, e.g. (1, 4)."))
    return (_int(bs[0], where, "sparse_block_shape", 1), _int(bs[1], where, "sparse_block_shape", 1))


def _norm_fn(norm: Any, where: str) -> Callable[[Tensor], Tensor]:
    if norm is None or (not isinstance(norm, bool) and isinstance(norm, numbers.Real) and norm == 2):
        return lambda t: t * t
    if not isinstance(norm, bool) and isinstance(norm, numbers.Real) and norm == 1:
        return lambda t: t.abs()
    if callable(norm):
        return norm
    raise ArgumentError(describe(where, "norm", "1, 2 or a callable mapping the weight to elementwise scores",
                                 repr(norm), "use norm=2 (squares), norm=1 (magnitudes) or e.g. norm=lambda w: w.abs()."))


def _sparsity_level(level: Any, ties: str, where: str) -> Any:
    if isinstance(level, Tensor):
        if ties != "index":
            raise ArgumentError(describe(where, "sparsity_level", "a Python number with ties='torch'",
                                         "a tensor", "pass ties='index' for a tensor sparsity_level, or a float."))
        if level.ndim != 0 or not level.is_floating_point():
            raise ArgumentError(describe(where, "sparsity_level", "a 0-d float tensor",
                                         f"{level.dtype} of shape {tuple(level.shape)}",
                                         "pass torch.tensor(0.5, dtype=torch.float64)."))
        return level
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or math.isnan(level):
        raise ArgumentError(describe(where, "sparsity_level", "a number (fraction of blocks zeroed)", repr(level),
                                     "pass e.g. sparsity_level=0.5."))
    return float(level)


def _blocks_zeroed(level: Any, nb: int) -> Any:
    """WeightNormSparsifier's count: ``round(level * nb)`` clipped to ``nb - 1``; all at ``>= 1``; none at ``<= 0``."""
    if isinstance(level, Tensor):
        s = level.to(torch.float64)
        k = torch.round(s * nb).clamp(0, max(nb - 1, 0))
        k = torch.where(s >= 1.0, torch.full_like(k, nb), torch.where(s <= 0.0, torch.zeros_like(k), k))
        return k.to(torch.int64)
    if level >= 1.0:
        return nb
    if level <= 0.0:
        return 0
    return max(0, min(nb - 1, round(level * nb)))


def _drop_smallest(scores: Tensor, k: Any, ties: str) -> Tuple[Tensor, Any, Any]:
    """Scores and one hyper-parameter for ``masks`` that drop the ``k`` smallest along the last dim.

    ``ties="index"``: keep ``n - k`` largest (lower index wins). ``ties="torch"``:
    ``torch.topk(largest=False)`` picks the dropped entries, as the peers do, and
    a 0/1 score with threshold 0.5 keeps the rest.
    """
    n = scores.shape[-1]
    if ties == "index":
        return scores, n - k, None
    keep = torch.ones_like(scores)
    if k > 0:
        idx = torch.topk(scores, k, dim=-1, largest=False).indices
        keep = keep.scatter(-1, idx, 0.0)
    return keep, None, 0.5


def _union(a: Tensor, b: Tensor) -> Tensor:
    """Pure: ``a | b`` for bool masks, computed on uint8.

    Inductor (torch 2.13, CPU) emits C++ that does not compile for some
    vectorised ``bool | bool`` kernels (``Vectorized<bool>`` has no ``cast``);
    the same OR on uint8 storage compiles and is exact.
    """
    return (a.view(torch.uint8) | b.view(torch.uint8)).view(torch.bool)


def weight_norm_masks(
    params: Any,
    names: Names,
    *,
    sparsity_level: Any = 0.5,
    sparse_block_shape: Sequence[int] = (1, 4),
    zeros_per_block: Optional[int] = None,
    norm: Any = None,
    ties: str = "torch",
) -> Dict[str, Tensor]:
    """Pure: the masks ``torch.ao.pruning.WeightNormSparsifier`` computes in ``step()``.

    For each named 2-D parameter ``w`` (each on its own, like one sparsifier
    config per tensor): scores ``s = norm(w)`` elementwise (``w*w`` for 2,
    ``|w|`` for 1, or the callable). Blocks of ``sparse_block_shape`` start at
    index 0; edge blocks are partial and scored by the mean of their real
    scores (``F.avg_pool2d(ceil_mode=True)``; the same float32 sums). The
    ``round(sparsity_level * num_blocks)`` blocks (at most ``num_blocks - 1``;
    all when ``sparsity_level >= 1``; none when ``<= 0``) with the smallest
    mean are zeroed. With ``zeros_per_block < numel(block)`` a zeroed block
    keeps all but its ``zeros_per_block`` smallest scores (every block does:
    it is the peer's ``tensor_mask | block_mask``).

    Differences from the peer, all deliberate and tested:

    * masks are bool (the peer stores float for ``zeros_per_block ==
      numel(block)``, bool otherwise);
    * the peer crashes (shape mismatch in ``logical_or``) when the block does
      not divide the weight and ``0 < zeros_per_block < numel(block)``; this
      raises :class:`ArgumentError` instead;
    * the peer recomputes from the masked weight on each ``step()``; pass the
      masked params (``apply_masks``) to reproduce later steps.

    Args:
        params: Mapping of parameter name to tensor.
        names: The parameter(s) to sparsify (each must be 2-D).
        sparsity_level: Fraction of blocks zeroed per tensor: a number, or a
            0-d float tensor with ``ties="index"`` (never recompiles; float64
            for the peer's exact rounding).
        sparse_block_shape: ``(block_rows, block_cols)``.
        zeros_per_block: Zeros inside each zeroed block; default all.
        norm: ``1``, ``2`` (default) or a callable applied to the weight.
        ties: ``"torch"`` reproduces the peer's ``torch.topk`` choice among
            equal scores (CPU); ``"index"`` uses the library's rule (lower
            flat block index kept).

    Returns:
        ``{name: BoolTensor[w.shape]}``, True = kept.

    Raises:
        ArgumentError: A hyper-parameter is invalid, or the case above.
        SparseKitError: A parameter is missing, not floating or not 2-D.
    """
    where = "weight_norm_masks"
    if ties not in ("torch", "index"):
        raise ArgumentError(describe(where, "ties", "'torch' or 'index'", repr(ties),
                                     "use ties='torch' for exact parity, 'index' for the library's rule."))
    fn = _norm_fn(norm, where)
    level = _sparsity_level(sparsity_level, ties, where)
    out: Dict[str, Tensor] = {}
    for name in _names(names, where):
        out[name] = _weight_norm_mask(params, name, fn, level, sparse_block_shape, zeros_per_block, ties, where)
    return out


def _weight_norm_mask(params: Any, name: str, fn: Callable[[Tensor], Tensor], level: Any,
                      sparse_block_shape: Any, zeros_per_block: Any, ties: str, where: str) -> Tensor:
    w = check_param(params, name, None, where, "params")
    scope = weight_norm_spec(name, tuple(w.shape), sparse_block_shape)
    block = scope.block
    vpb = block.numel_per_block()
    zpb = vpb if zeros_per_block is None else _int(zeros_per_block, where, "zeros_per_block", 0, vpb)
    tensor_level = not isinstance(level, Tensor)
    if zpb == 0 or (tensor_level and level <= 0.0):
        return torch.ones(w.shape, dtype=torch.bool, device=w.device)
    if tensor_level and level >= 1.0 and zpb == vpb:
        return torch.zeros(w.shape, dtype=torch.bool, device=w.device)
    if block.pad and zpb < vpb:
        raise ArgumentError(
            describe(where, "zeros_per_block",
                     f"{vpb} (whole blocks) when sparse_block_shape {block.shape} does not divide {tuple(w.shape)}",
                     zpb, "WeightNormSparsifier itself fails here (shape mismatch); use a block shape that divides "
                          "the weight, or zeros_per_block=None.")
        )
    p = {name: w}
    s = fn(w)
    # Tensor level: the mean score of each (partial) block, in the peer's dtype.
    nb = block.numblk()
    means = block_mean({name: s}, block).to(s.dtype).reshape(1, 1, nb)
    scores, nnz, thr = _drop_smallest(means, _blocks_zeroed(level, nb), ties)
    keep = masks(p, scope, scores=scores, nnz=nnz, thresholds=thr)[name]
    if zpb < vpb:
        # Block level: inside every block, drop the zpb smallest scores.
        inner = ScopeSpec(BlockSpec(View(name, tuple(w.shape)), ()), block.shape)
        scores, nnz, thr = _drop_smallest(to_blocks(s, block.shape), zpb, ties)
        keep = _union(keep, masks(p, inner, scores=scores, nnz=nnz, thresholds=thr)[name])
    return keep


# ---------------------------------------------------------------------------
# torch.nn.utils.prune
# ---------------------------------------------------------------------------


def l1_unstructured(params: Any, name: str, amount: Any, *, values: Any = None) -> Dict[str, Tensor]:
    """Pure: ``torch.nn.utils.prune.l1_unstructured`` -- zero the ``amount`` smallest ``|w|``.

    Args:
        params: Mapping of parameter name to tensor.
        name: The parameter to prune.
        amount: An int (number of elements pruned) or a float in ``[0, 1]``
            (fraction, ``round(amount * numel)``, half to even); 0-d tensors
            are accepted and never recompile.
        values: Optional mapping keyed like ``params``: score
            ``|values[name]|`` instead (prune's ``importance_scores``).

    Returns:
        ``{name: BoolTensor}``, True = kept. Ties at the cut keep the lower
        flat index (PyTorch keeps an unspecified subset of the tied entries).
    """
    where = "l1_unstructured"
    shape = _shape(params, name, where)
    scope = ScopeSpec(BlockSpec(View(name, shape), ()), ())
    return masks(params, scope, nnz=_nnz_from_amount(amount, scope.numblk_per_scope(), where), values=values, p=1)


def random_unstructured(params: Any, name: str, amount: Any, *, generator: Optional[torch.Generator] = None,
                        seed: Optional[int] = None, noise: Optional[Tensor] = None) -> Dict[str, Tensor]:
    """Pure given its randomness: ``torch.nn.utils.prune.random_unstructured``.

    Draws ``u = torch.rand(w.shape, dtype=w.dtype, generator=...)`` and
    prunes the ``amount`` entries with the largest ``u``, as PyTorch does with
    ``torch.rand_like``. With ``seed=s`` the draws equal PyTorch's after
    ``torch.manual_seed(s)`` (CPU). Randomness is explicit: pass exactly one of

    * ``generator``: a ``torch.Generator``, advanced by the draw (eager only:
      ``torch.compile`` cannot trace generators);
    * ``seed``: an int; a fresh generator makes the call a pure function of
      its arguments (eager only, as above);
    * ``noise``: the uniform draws themselves, a tensor of ``w``'s shape --
      the form to use inside ``torch.compile`` (draw it outside).

    Args:
        params: Mapping of parameter name to tensor.
        name: The parameter to prune.
        amount: As in :func:`l1_unstructured`.
        generator: A ``torch.Generator`` on the parameter's device.
        seed: An int seed.
        noise: Precomputed draws, shape ``w.shape``; the largest are pruned.

    Returns:
        ``{name: BoolTensor}``, True = kept. Ties among the draws keep the
        lower flat index.
    """
    where = "random_unstructured"
    w = check_param(params, name, None, where, "params")
    given = [k for k, v in (("generator", generator), ("seed", seed), ("noise", noise)) if v is not None]
    if len(given) != 1:
        raise ArgumentError(describe(where, "generator/seed/noise", "exactly one of them", given or "none",
                                     "pass seed=0, generator=torch.Generator().manual_seed(0), or noise=torch.rand(w.shape)."))
    if noise is not None:
        u = check_param({name: noise}, name, tuple(w.shape), where, "noise")
    else:
        if generator is None:
            generator = torch.Generator(device=w.device).manual_seed(_int(seed, where, "seed", 0))
        elif not isinstance(generator, torch.Generator):
            raise ArgumentError(describe(where, "generator", "a torch.Generator", type(generator).__name__,
                                         "pass torch.Generator().manual_seed(0), or seed=0."))
        u = torch.rand(w.shape, generator=generator, dtype=w.dtype, device=w.device)
    scope = _flat_scope(name, tuple(w.shape))
    nnz = _nnz_from_amount(amount, scope.numblk_per_scope(), where)
    return masks(params, scope, nnz=nnz, scores=(-u).reshape(1, -1))


def ln_structured(params: Any, name: str, amount: Any, n: Any, dim: int, *, values: Any = None) -> Dict[str, Tensor]:
    """Pure: ``torch.nn.utils.prune.ln_structured`` -- zero whole slices along ``dim`` by L``n`` norm.

    A channel is the slice ``w.select(dim, i)``; its score is its L``n``
    norm over all other dims, and the ``amount`` channels with the smallest
    norms are zeroed. As a spec: ``BlockSpec(View.of(name, w), (-1, ..., 1 at
    dim, ..., -1))`` with one scope over all channels.

    Args:
        params: Mapping of parameter name to tensor.
        name: The parameter to prune.
        amount: Channels pruned: an int count or a float fraction of
            ``w.shape[dim]`` (rounded half to even), as in PyTorch.
        n: Norm order: a positive number, ``0``, ``math.inf``, ``-math.inf``
            or ``"fro"`` (= 2). ``"nuc"`` is not supported.
        dim: The channel dim.
        values: Optional mapping keyed like ``params`` to score instead
            (prune's ``importance_scores``).

    Returns:
        ``{name: BoolTensor}``, True = kept. Ties keep the lower channel index.
    """
    where = "ln_structured"
    shape = _shape(params, name, where)
    d = _axis(dim, len(shape), where, "dim")
    if n == "fro":
        n = 2
    ok = isinstance(n, numbers.Real) and not isinstance(n, bool) and (n >= 0 or n == -math.inf)
    if not ok:
        raise ArgumentError(describe(where, "n", "a norm order: a number >= 0, math.inf, -math.inf or 'fro'",
                                     repr(n), "use n=2, n=1 or math.inf; nuclear norms are not block norms."))
    block = [-1] * len(shape)
    block[d] = 1
    scope = ScopeSpec(BlockSpec(View(name, shape), tuple(block)), ())
    nnz = _nnz_from_amount(amount, scope.numblk_per_scope(), where)
    return masks(params, scope, nnz=nnz, values=values, p=n)


def global_unstructured(params: Any, names: Names, amount: Any, *, values: Any = None) -> Dict[str, Tensor]:
    """Pure: ``torch.nn.utils.prune.global_unstructured`` with ``L1Unstructured``.

    All elements of the named parameters compete in one scope (a
    :class:`~sparsekit_fx.specs.ScopeCoupling`, in the order of ``names`` and
    row-major inside each, as ``parameters_to_vector``), and the ``amount``
    smallest ``|w|`` are zeroed.

    Args:
        params: Mapping of parameter name to tensor.
        names: The parameters pruned together.
        amount: An int count or a float fraction of the total number of
            elements (rounded half to even), as in PyTorch.
        values: Optional mapping keyed like ``params`` to score instead
            (prune's ``importance_scores``, keyed by name).

    Returns:
        ``{name: BoolTensor}`` for every name, True = kept. Ties keep the
        lower index in the concatenated order.
    """
    where = "global_unstructured"
    names = _names(names, where)
    scope = ScopeCoupling(tuple(_flat_scope(nm, _shape(params, nm, where)) for nm in names))
    nnz = _nnz_from_amount(amount, scope.numblk_per_scope(), where)
    return masks(params, scope, nnz=nnz, values=values, p=1)
