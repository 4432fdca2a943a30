"""Selection: exact top-k masks, k-th largest values and thresholds.

All selection works on *ordered integer keys*: a monotone map of float scores
to integers under which NaN ranks above ``+inf`` and ``-0.0 == +0.0``. The
order is therefore total and deterministic, and ties are broken by index
(lower index wins). Every function accepts ``k``/``nnz`` as a Python int *or*
a tensor, never reads tensor values on the host, and compiles to a handful of
fused kernels; a changing tensor ``k`` never recompiles.

Algorithms, chosen statically from the row length ``n``:

* ``n <= SMALL_N``: pairwise ranks (``n*n`` comparisons per row, one kernel).
* otherwise: a radix bisection on the keys finds the k-th largest key in a
  fixed number of counting passes (``bits / bits_per_pass``), then a
  two-level prefix count keeps exactly the first ``k - #greater`` tied
  entries.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Tuple

import torch
from torch import Tensor

from .errors import ArgumentError, describe

__all__ = [
    "kth_largest",
    "kth_mid",
    "topk_mask",
    "threshold_mask",
    "sparsity_to_nnz",
    "float_keys",
    "keys_to_float",
    "SMALL_N",
]

#: Rows up to this length use pairwise ranks instead of bisection.
SMALL_N = 32
#: Chunk length of the two-level tie resolution.
_TIE_CHUNK = 64


# ---------------------------------------------------------------------------
# ordered keys
# ---------------------------------------------------------------------------


def _key_dtypes(dtype: torch.dtype) -> Tuple[torch.dtype, torch.dtype, int]:
    if dtype == torch.float64:
        return torch.float64, torch.int64, 64
    return torch.float32, torch.int32, 32


def float_keys(x: Tensor) -> Tensor:
    """Pure: order-preserving integer keys of float ``x``.

    ``key(a) < key(b)`` iff ``a < b`` for non-NaN values; ``-0.0`` and ``+0.0``
    share a key; every NaN maps to one key above ``+inf``. Half types are
    widened to float32 (exactly). Returns int32 (int64 for float64 input).
    """
    fdt, idt, bits = _key_dtypes(x.dtype)
    x = x.to(fdt)
    x = torch.where(x == 0, torch.zeros_like(x), x)  # -0.0 -> +0.0
    b = x.view(idt)
    mask = (1 << (bits - 1)) - 1
    key = torch.where(b < 0, b ^ mask, b)
    nan_key = 0x7FC00000 if bits == 32 else 0x7FF8000000000000
    return torch.where(torch.isnan(x), torch.full_like(key, nan_key), key)


def keys_to_float(key: Tensor) -> Tensor:
    """Pure: inverse of :func:`float_keys` (NaN keys give NaN)."""
    bits = 64 if key.dtype == torch.int64 else 32
    fdt = torch.float64 if bits == 64 else torch.float32
    mask = (1 << (bits - 1)) - 1
    b = torch.where(key < 0, key ^ mask, key)
    return b.view(fdt)


# ---------------------------------------------------------------------------
# k handling
# ---------------------------------------------------------------------------


def _as_k(k: Any, n: int, where: str, arg: str, lo: int, hi: int, device: torch.device) -> Tensor:
    """Validate a Python-int ``k`` statically, clamp a tensor ``k``; return int64."""
    if isinstance(k, Tensor):
        if k.is_floating_point() or k.is_complex() or k.dtype == torch.bool:
            raise ArgumentError(
                describe(where, arg, "an integer tensor or a Python int", f"a {k.dtype} tensor",
                         f"pass {arg} as torch.tensor(value) with an integer dtype, or use sparsity=.")
            )
        return k.to(device=device, dtype=torch.int64).clamp(lo, hi)
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise ArgumentError(
            describe(where, arg, "an int or an integer tensor", repr(k),
                     f"pass {arg} as an int in [{lo}, {hi}] or a 0-d integer tensor.")
        )
    k = int(k)
    if not lo <= k <= hi:
        unit = "blocks per scope" if arg == "nnz" else "entries along dim"
        raise ArgumentError(
            describe(where, arg, f"a value in [{lo}, {hi}] ({unit}: {n})", k,
                     f"choose {arg} between {lo} and {hi}.")
        )
    return torch.full((), k, dtype=torch.int64, device=device)


# ---------------------------------------------------------------------------
# core algorithms on keys (last dim)
# ---------------------------------------------------------------------------


def _rank_small(keys: Tensor) -> Tensor:
    """Pure: rank of every entry along the last dim (0 = largest), ties by index."""
    n = keys.shape[-1]
    a = keys.unsqueeze(-2)  # other j, along last
    b = keys.unsqueeze(-1)  # self i
    idx = torch.arange(n, device=keys.device)
    earlier = idx.unsqueeze(0) < idx.unsqueeze(1)  # [i, j] = j < i
    beats = (a > b) | ((a == b) & earlier)
    return beats.to(torch.int32).sum(-1)


def _count_ge(keys: Tensor, cands: Tensor) -> Tensor:
    """Pure: ``counts[..., j] = #(keys[..., :] >= cands[..., j])`` as int64."""
    n = keys.shape[-1]
    if n <= 4 * _TIE_CHUNK * _TIE_CHUNK:
        return (keys.unsqueeze(-2) >= cands.unsqueeze(-1)).sum(-1)
    # Long rows: count per cache-sized chunk, then add the chunks up, so each
    # chunk is read from cache once per candidate rather than from memory.
    chunk = 4096
    pad = (-n) % chunk
    low = torch.iinfo(keys.dtype).min
    if pad:
        keys = torch.nn.functional.pad(keys, (0, pad), value=low)
    kc = keys.unflatten(-1, (-1, chunk))  # (..., R, C)
    part = (kc.unsqueeze(-2) >= cands.unsqueeze(-2).unsqueeze(-1)).sum(-1)  # (..., R, B)
    # Padding holds the minimum key, which no candidate (always > minimum) counts.
    return part.sum(-2)


def _kth_key(keys: Tensor, k: Tensor) -> Tensor:
    """Pure: the k-th largest key along the last dim (``k = 0`` gives the max key).

    A radix bisection: each pass splits the remaining key interval into
    ``2**b`` equal parts and keeps the highest part that still holds at least
    ``k`` keys at or above its start. All interval widths are static.
    """
    n = keys.shape[-1]
    bits = 64 if keys.dtype == torch.int64 else 32
    per_pass = 1 if n <= 4096 else 4
    lead = keys.shape[:-1]
    kmin = -(1 << (bits - 1))
    k = k.expand(lead).unsqueeze(-1)
    width_bits = bits
    lo: Optional[Tensor] = None
    while width_bits > 0:
        b = min(per_pass, width_bits)
        step_bits = width_bits - b
        offsets = [j << step_bits for j in range(1, 1 << b)]
        if lo is None:  # first pass: start is the static minimum key
            cands = torch.tensor([kmin + o for o in offsets], dtype=torch.int64, device=keys.device)
            cands = cands.expand(lead + (len(offsets),))
            base = torch.full(lead + (1,), kmin, dtype=torch.int64, device=keys.device)
        else:
            base = lo
            cands = lo + torch.tensor(offsets, dtype=torch.int64, device=keys.device)
        counts = _count_ge(keys, cands.to(keys.dtype))
        ok = counts >= k
        # counts fall as candidates rise, so `ok` is a prefix; keep its last candidate.
        lo = torch.where(ok, cands, base).amax(-1, keepdim=True)
        width_bits = step_bits
    return lo.squeeze(-1).to(keys.dtype)


def _first_true(mask: Tensor, r: Tensor) -> Tensor:
    """Pure: keep the first ``r`` True entries of ``mask`` along the last dim."""
    n = mask.shape[-1]
    r = r.unsqueeze(-1)
    if n <= _TIE_CHUNK:
        idx = torch.arange(n, device=mask.device)
        before = (idx.unsqueeze(0) < idx.unsqueeze(1)).to(torch.int32)  # [i, j] = j < i
        rank = (mask.to(torch.int32).unsqueeze(-2) * before).sum(-1)
        return mask & (rank < r)
    c = _TIE_CHUNK
    pad = (-n) % c
    m = torch.nn.functional.pad(mask, (0, pad), value=False) if pad else mask
    m = m.unflatten(-1, (-1, c))  # (..., R, C)
    cnt = m.to(torch.int64).sum(-1)  # (..., R)
    excl = torch.cumsum(cnt, dim=-1) - cnt
    full = (excl + cnt) <= r
    partial = (excl < r) & (excl + cnt > r)  # at most one chunk per row
    nchunks = m.shape[-2]
    ridx = torch.arange(nchunks, device=mask.device)
    pidx = (partial.to(torch.int64) * ridx).sum(-1, keepdim=True)  # (..., 1)
    pm = torch.gather(m, -2, pidx.unsqueeze(-1).expand(m.shape[:-2] + (1, c))).squeeze(-2)  # (..., C)
    need = r - torch.gather(excl, -1, pidx)  # (..., 1)
    inner = _first_true(pm, need.squeeze(-1))  # (..., C)
    in_partial = (ridx == pidx) & partial.any(-1, keepdim=True)  # (..., R)
    keep = m & (full.unsqueeze(-1) | (in_partial.unsqueeze(-1) & inner.unsqueeze(-2)))
    keep = keep.flatten(-2)
    return keep[..., :n] if pad else keep


def _topk_keys(keys: Tensor, k: Tensor) -> Tensor:
    """Pure: exactly ``k`` kept entries per row of ``keys``, ties to lower index.

    ``k`` is an int64 tensor broadcastable to ``keys.shape[:-1]``, in ``[0, n]``.
    """
    k = k.expand(keys.shape[:-1])
    if keys.shape[-1] <= SMALL_N:
        return _rank_small(keys) < k.unsqueeze(-1)
    kstar = _kth_key(keys, k).unsqueeze(-1)
    gt = keys > kstar
    need = k - gt.to(torch.int64).sum(-1)
    return gt | _first_true(keys == kstar, need)


# ---------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------


def _move_last(x: Tensor, dim: int, where: str) -> Tuple[Tensor, int]:
    if x.ndim == 0:
        raise ArgumentError(describe(where, "x", "a tensor with at least one dim", "a 0-d tensor", "unsqueeze it."))
    if not -x.ndim <= dim < x.ndim:
        raise ArgumentError(
            describe(where, "dim", f"a dim in [{-x.ndim}, {x.ndim - 1}]", dim, "pick an existing dim.")
        )
    d = dim % x.ndim
    return x.movedim(d, -1), d


def _check_float(x: Any, where: str, arg: str) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        got = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise ArgumentError(describe(where, arg, "a floating-point tensor", got, f"pass {arg} as a float tensor."))


def topk_mask(scores: Tensor, k: Any, dim: int = -1) -> Tensor:
    """Pure: keep exactly ``k`` entries along ``dim``: the largest, ties to the lower index.

    Args:
        scores: Float tensor. NaN ranks above ``+inf``.
        k: Entries kept per slice: an int in ``[0, n]`` or an integer tensor
            broadcastable to the other dims (clamped to ``[0, n]``).
        dim: The dim to select along.

    Returns:
        A bool tensor shaped like ``scores`` with exactly ``k`` True per slice.
    """
    where = "topk_mask"
    _check_float(scores, where, "scores")
    x, d = _move_last(scores, dim, where)
    n = x.shape[-1]
    kt = _as_k(k, n, where, "k", 0, n, x.device)
    keep = _topk_keys(float_keys(x.detach()), kt)
    return keep.movedim(-1, d)


def threshold_mask(scores: Tensor, thresholds: Any) -> Tensor:
    """Pure: ``scores >= thresholds`` in the total order of :func:`float_keys`.

    A NaN score is kept against any non-NaN threshold (NaN ranks highest).

    Args:
        scores: Float tensor.
        thresholds: A number or a tensor broadcastable to ``scores``.
    """
    _check_float(scores, "threshold_mask", "scores")
    t = torch.as_tensor(thresholds, dtype=scores.dtype, device=scores.device)
    return float_keys(scores.detach()) >= float_keys(t.detach())


def kth_largest(x: Tensor, k: Any, dim: int = -1) -> Tensor:
    """Pure: the k-th largest value along ``dim`` (``k = 1`` is the maximum).

    Args:
        x: Float tensor. NaN ranks above ``+inf``.
        k: An int in ``[1, n]`` or an integer tensor (clamped to ``[1, n]``);
            a changing tensor never triggers a recompile.
        dim: The dim to reduce.

    Returns:
        ``x`` with ``dim`` removed; half inputs give float32 results.
    """
    where = "kth_largest"
    _check_float(x, where, "x")
    t, _ = _move_last(x, dim, where)
    n = t.shape[-1]
    kt = _as_k(k, n, where, "k", 1, n, t.device)
    return keys_to_float(_kth_key(float_keys(t.detach()), kt))


def kth_mid(x: Tensor, k: Any, dim: int = -1, k_weight: float = 1.0) -> Tensor:
    """Pure: weighted midpoint of the k-th and (k+1)-th largest values along ``dim``.

    Returns ``(v_k + k_weight * v_{k+1}) / (1 + k_weight)``: a threshold that
    keeps the top ``k`` with a margin on both sides.

    Args:
        x: Float tensor.
        k: An int in ``[1, n - 1]`` or an integer tensor (clamped).
        dim: The dim to reduce.
        k_weight: Weight of the (k+1)-th value; must be >= 0.
    """
    where = "kth_mid"
    _check_float(x, where, "x")
    if isinstance(k_weight, bool) or not isinstance(k_weight, numbers.Real) or not k_weight >= 0:
        raise ArgumentError(describe(where, "k_weight", "a real number >= 0", repr(k_weight), "use e.g. 1.0."))
    t, _ = _move_last(x, dim, where)
    n = t.shape[-1]
    if n < 2:
        raise ArgumentError(describe(where, "x", "at least 2 entries along dim", n, "use kth_largest instead."))
    kt = _as_k(k, n, where, "k", 1, n - 1, t.device)
    keys = float_keys(t.detach())
    v1 = keys_to_float(_kth_key(keys, kt))
    v2 = keys_to_float(_kth_key(keys, kt + 1))
    return (v1 + k_weight * v2) / (1.0 + k_weight)


def sparsity_to_nnz(scope: Any, sparsity: Any, *, _where: str = "sparsity_to_nnz") -> Any:
    """Pure: blocks kept per scope for a fraction ``sparsity`` of blocks pruned.

    ``nnz = n - floor(sparsity * n)`` with ``n = scope.numblk_per_scope()``,
    as in sparsekit. A Python float gives an int (checked to be in
    ``[0, 1]``); a tensor gives an int64 tensor (clamped), computed in float64
    so that it never triggers a recompile.
    """
    where = _where  # ops pass their own name, so messages point at the call the user made
    n = scope.numblk_per_scope()
    if isinstance(sparsity, Tensor):
        if not sparsity.is_floating_point():
            raise ArgumentError(
                describe(where, "sparsity", "a float in [0, 1] or a float tensor", sparsity.dtype,
                         "pass torch.tensor(0.5) (a float tensor).")
            )
        s = sparsity.to(torch.float64).clamp(0.0, 1.0)
        return (n - torch.floor(s * n)).to(torch.int64)
    if isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real) or not 0.0 <= float(sparsity) <= 1.0:
        raise ArgumentError(
            describe(where, "sparsity", "a number in [0, 1] (fraction of blocks pruned)", repr(sparsity),
                     "pass e.g. 0.5 to prune half of every scope.")
        )
    return max(n - int(math.floor(float(sparsity) * n)), 0)
