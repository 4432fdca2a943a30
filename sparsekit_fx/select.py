"""Selection: exact top-k masks, k-th largest values and thresholds.

Scores are ordered by a total *key order*: the float order, with NaN above
``+inf``, all NaNs equal and ``-0.0 == +0.0``; ties are broken by index
(lower index wins). :func:`float_keys` maps floats to integers in this order,
but the kernels never bit-cast large tensors (Inductor's CPU code turns
bit casts and ``isnan`` into scalar loops): they compare floats directly,
with ``x != x`` for NaN, and bit-cast only a handful of candidate keys.
Every function accepts ``k``/``nnz`` as a Python int *or* a tensor, never
reads tensor values on the host, and a changing tensor ``k`` never recompiles.

Algorithms, chosen statically from the row length ``n``:

* ``n <= PLANES_N``: pairwise comparisons between the ``n`` "planes" of the
  rows, each pair compared once (``n(n-1)/2`` comparisons per row, one
  vectorised kernel that never materialises ranks).
* ``n <= PAIRWISE_N``: broadcast pairwise ranks.
* otherwise: a radix bisection finds the k-th largest key with
  ``bits / bits_per_pass`` counting passes (float comparisons, int32 counts,
  all candidates of a pass counted in one fused loop), then a chunked count
  finds the index ``cut`` of the last tied entry kept. The mask is then the
  pointwise rule ``score > t  or  (score == t and index < cut)``, which
  Inductor fuses into whatever consumes it: no mask is materialised.

:func:`topk_where` additionally fuses the whole selection for short rows
(2:4-like patterns) into the kernel that writes the result.
"""

from __future__ import annotations

import math
import numbers
import sys
from typing import Any, Dict, List, Optional, Tuple

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
    "key_ge",
    "key_gt",
    "key_eq",
    "topk_keep",
    "threshold_keep",
    "topk_where",
    "packs_rows",
    "SMALL_N",
    "PLANES_N",
    "PAIRWISE_N",
]

#: Rows up to this length are ranked by comparing their planes pairwise.
PLANES_N = 8
#: Rows up to this length use broadcast pairwise ranks instead of bisection.
PAIRWISE_N = 32
#: Kept for compatibility: the longest rows not ranked by bisection.
SMALL_N = PAIRWISE_N
#: Chunk length of the first level of the tie search in long rows.
_CHUNK = 4096
#: Scores up to this many entries count all candidates of a pass in one broadcast reduction.
_SMALL_DATA = 1 << 16
#: Chunk length of the last level of the tie search.
_TIE_CHUNK = 64
#: Lanes of the fused short-row kernel (one AVX-512 vector of float32).
_LANES = 16



# ---------------------------------------------------------------------------
# ordered keys, and the same order on floats
# ---------------------------------------------------------------------------


def _key_dtypes(dtype: torch.dtype) -> Tuple[torch.dtype, torch.dtype, int]:
    if dtype == torch.float64:
        return torch.float64, torch.int64, 64
    return torch.float32, torch.int32, 32


def _nan_key(bits: int) -> int:
    return 0x7FC00000 if bits == 32 else 0x7FF8000000000000


def _neg_inf_key(bits: int) -> int:
    """The key of ``-inf``: its bit pattern with the magnitude bits flipped."""
    b = -(1 << 23) if bits == 32 else -(1 << 52)  # bits of -inf as a signed integer
    return b ^ ((1 << (bits - 1)) - 1)


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
    return torch.where(torch.isnan(x), torch.full_like(key, _nan_key(bits)), key)


def keys_to_float(key: Tensor) -> Tensor:
    """Pure: inverse of :func:`float_keys` (NaN keys give NaN)."""
    bits = 64 if key.dtype == torch.int64 else 32
    fdt = torch.float64 if bits == 64 else torch.float32
    mask = (1 << (bits - 1)) - 1
    b = torch.where(key < 0, key ^ mask, key)
    return b.view(fdt)


def _isnan(x: Tensor) -> Tensor:
    return x != x  # vectorises in Inductor's CPU code, unlike isnan


def key_ge(a: Tensor, b: Tensor) -> Tensor:
    """Pure: ``a >= b`` in the key order (NaN highest, NaNs equal, -0.0 == +0.0)."""
    return (a >= b) | _isnan(a)


def key_gt(a: Tensor, b: Tensor) -> Tensor:
    """Pure: ``a > b`` in the key order."""
    return (a > b) | (_isnan(a) & ~_isnan(b))


def key_eq(a: Tensor, b: Tensor) -> Tensor:
    """Pure: ``a == b`` in the key order."""
    return (a == b) | (_isnan(a) & _isnan(b))


def _scores(x: Tensor) -> Tensor:
    """Scores as compared: detached, half types widened (exactly) to float32."""
    x = x.detach()
    return x if x.dtype in (torch.float32, torch.float64) else x.to(torch.float32)


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
# short rows: pairwise comparisons
# ---------------------------------------------------------------------------


def _plane_ranks(planes: List[Tensor]) -> List[Tensor]:
    """Pure: int32 rank of each plane (0 = largest, ties to the lower plane), pairs compared once."""
    n = len(planes)
    ranks: List[Any] = [0] * n
    for a in range(n):
        for b in range(a + 1, n):
            beats = key_ge(planes[a], planes[b]).to(torch.int32)  # the earlier entry wins ties
            ranks[b] = ranks[b] + beats
            ranks[a] = ranks[a] + (1 - beats)
    return [r if isinstance(r, Tensor) else torch.zeros_like(planes[0], dtype=torch.int32) for r in ranks]


def packs_rows(n: int) -> bool:
    """Pure: whether :func:`topk_keep` writes rows of length ``n`` as packed words."""
    return n in (4, 8)


def _planes_keep(s: Tensor, k: Tensor) -> Tensor:
    """Pure: top-k of short rows by comparing planes; ``k`` shaped ``s.shape[:-1]``; bool ``(..., n)``.

    Rows of 4 or 8 are written as one int32 / int64 word per row (a byte per
    entry, in memory order) viewed as bool: one vectorised store per row,
    where a bool tensor would be stored entry by entry.
    """
    n = s.shape[-1]
    k32 = k.to(torch.int32)
    keeps = [r < k32 for r in _plane_ranks(list(s.unbind(-1)))]
    if not packs_rows(n):
        return torch.stack(keeps, dim=-1)
    wdt = torch.int32 if n == 4 else torch.int64
    order = range(n) if sys.byteorder == "little" else range(n - 1, -1, -1)
    word = None
    for byte, j in enumerate(order):
        term = keeps[j].to(wdt) << (8 * byte)
        word = term if word is None else word | term
    return word.unsqueeze(-1).view(torch.bool)  # not via uint8: see layout.pack_bool


def _pairwise_keep(s: Tensor, k: Tensor) -> Tensor:
    """Pure: top-k of rows by broadcast pairwise ranks (``n*n`` comparisons per row)."""
    n = s.shape[-1]
    a = s.unsqueeze(-2)  # other j, along last
    b = s.unsqueeze(-1)  # self i
    idx = torch.arange(n, device=s.device)
    earlier = idx.unsqueeze(0) < idx.unsqueeze(1)  # [i, j] = j < i
    beats = torch.where(earlier, key_ge(a, b), key_gt(a, b))
    rank = beats.sum(-1, dtype=torch.int32)
    return rank < k.unsqueeze(-1).to(torch.int32)


# ---------------------------------------------------------------------------
# long rows: radix bisection by counting, then the tie cut
# ---------------------------------------------------------------------------


def _candidate_floats(cands: Tensor, bits: int, fdt: torch.dtype) -> Tuple[Tensor, Tensor]:
    """Pure: floats ``cf`` and flags ``nan_ok`` with ``key(x) >= c  <=>  x >= cf or (isnan(x) and nan_ok)``."""
    idt = torch.int64 if bits == 64 else torch.int32
    cf = keys_to_float(cands.to(idt))
    cf = torch.where(cands <= _neg_inf_key(bits), torch.full_like(cf, -math.inf), cf)
    return cf.to(fdt), cands <= _nan_key(bits)


def _bisect(s: Tensor, k: Tensor, nnan: Tensor, lo: Tensor, hi_count: Tensor, width_bits: int) -> Tuple[Tensor, Tensor]:
    """Pure: radix bisection of the k-th largest key inside ``[lo, lo + 2**width_bits)``.

    Each pass splits the interval into ``2**b`` equal parts and keeps the
    highest part whose start still has at least ``k`` keys at or above it.
    Invariant: ``#(key >= lo) >= k > hi_count = #(key >= lo + width)``.

    A pass is one loop over ``s`` counting all its candidates (separate
    reductions of one shape, which Inductor fuses into one parallel loop;
    NaNs never compare true and are added from ``nnan``). Everything between
    passes is pointwise on per-row scalars (no stack, cat or gather), so
    Inductor inlines it into the next loop instead of running extra
    single-threaded kernels, each behind a thread barrier.

    Args:
        s: Scores ``(..., n)`` (float32 or float64).
        k: int64, ``s.shape[:-1]``.
        nnan: int32, NaNs per row.
        lo: int64; hi_count: int32; both ``s.shape[:-1]``.

    Returns:
        ``(kstar, greater)``: the k-th largest key (int64) and the number of
        keys above it (int32), shaped ``s.shape[:-1]``.
    """
    _, _, bits = _key_dtypes(s.dtype)
    # Scores that fit in cache are counted in one broadcast reduction per pass, where the
    # candidates are a loop dim rather than unrolled code: 4 bits per pass halves the passes
    # and the code to compile. Long rows streamed from memory take 2 (4 measured no faster).
    small = s.numel() <= _SMALL_DATA
    per_pass = 4 if small else 2
    while width_bits > 0:
        b = min(per_pass, width_bits)
        step_bits = width_bits - b
        if width_bits == bits:  # lo is the minimum key: offsets from it may not fit in int64
            base, offs = -(1 << (bits - 1)), [(j << step_bits) for j in range(1, 1 << b)]
            cands = torch.tensor([base + o for o in offs], dtype=torch.int64, device=s.device).expand(lo.shape + (len(offs),))
        else:
            offs = torch.tensor([(j << step_bits) for j in range(1, 1 << b)], dtype=torch.int64, device=s.device)
            cands = lo.unsqueeze(-1) + offs
        cf, nan_ok = _candidate_floats(cands, bits, s.dtype)
        extra = nan_ok.to(torch.int32) * nnan.unsqueeze(-1)
        if small:  # one broadcast reduction: fewer graph nodes, data stays in cache
            table = (s.unsqueeze(-2) >= cf.unsqueeze(-1)).sum(-1, dtype=torch.int32) + extra
            # counts fall as candidates rise: the m candidates with count >= k are a prefix.
            # Pick from the table by index instead of unrolling one select per candidate
            # (the unrolled selects were a third of the generated code of a 12-layer tree).
            m = (table >= k.unsqueeze(-1)).sum(-1, keepdim=True)
            last = cands.gather(-1, (m - 1).clamp(min=0)).squeeze(-1)
            lo = torch.where(m.squeeze(-1) > 0, last, lo)
            above = table.gather(-1, m.clamp(max=table.shape[-1] - 1)).squeeze(-1)
            hi_count = torch.where(m.squeeze(-1) < table.shape[-1], above, hi_count)
            width_bits = step_bits
            continue
        counts = [(s >= cf[..., j : j + 1]).sum(-1, dtype=torch.int32) + extra[..., j] for j in range(cands.shape[-1])]
        # counts fall as candidates rise: those with count >= k are a prefix; keep its last.
        new_lo = lo
        for j, n_ge in enumerate(counts):
            new_lo = torch.where(n_ge >= k, cands[..., j], new_lo)
        for n_ge in reversed(counts):  # the first candidate with count < k bounds the interval
            hi_count = torch.where(n_ge < k, n_ge, hi_count)
        lo = new_lo
        width_bits = step_bits
    return lo, hi_count


def _kth(s: Tensor, k: Tensor) -> Tuple[Tensor, Tensor]:
    """Pure: the k-th largest key of each row and how many entries are strictly above it.

    ``k = 0`` gives the largest key value and ``greater = 0``.

    Returns:
        ``(kstar, greater)``: int64 key and int32 count, shaped ``s.shape[:-1]``.
    """
    fdt, _, bits = _key_dtypes(s.dtype)
    s = s.to(fdt)
    lead = s.shape[:-1]
    k = k.expand(lead)
    nnan = _isnan(s).sum(-1, dtype=torch.int32)
    lo = torch.full(lead, -(1 << (bits - 1)), dtype=torch.int64, device=s.device)
    hi_count = torch.zeros(lead, dtype=torch.int32, device=s.device)
    return _bisect(s, k, nnan, lo, hi_count, bits)


def _nth_tie(s: Tensor, t: Tensor, need: Tensor, n_valid: Optional[int] = None,
             base: Optional[Tensor] = None) -> Tensor:
    """Pure: index of the ``need``-th (1-based) entry of each row equal to ``t`` (key order).

    Counts ties per chunk in one pass, picks the chunk holding the ``need``-th
    one, and recurses into that chunk alone. With ``base`` (the rows' offsets
    in a longer row), entries at index ``>= n_valid`` are padding and never
    count. ``need = 0`` gives an unspecified index.
    """
    n = s.shape[-1]
    dev = s.device
    t = t.unsqueeze(-1)
    if base is None:
        off = 0
        tie = key_eq(s, t)
    else:
        off = base
        tie = key_eq(s, t) & (torch.arange(n, device=dev) + base.unsqueeze(-1) < n_valid)
    if n <= _TIE_CHUNK:
        before = torch.cumsum(tie.to(torch.int32), dim=-1)
        return (before < need.unsqueeze(-1)).sum(-1) + off
    chunk = _TIE_CHUNK if n <= _TIE_CHUNK * _TIE_CHUNK else _CHUNK
    pad = (-n) % chunk
    if pad:  # padded entries lie past n_valid, so they are masked out below
        n_valid = n if base is None else n_valid
        s = torch.nn.functional.pad(s, (0, pad))
        base = torch.zeros_like(need) if base is None else base
        tie = key_eq(s, t) & (torch.arange(n + pad, device=dev) + base.unsqueeze(-1) < n_valid)
    cnt = tie.unflatten(-1, (-1, chunk)).sum(-1, dtype=torch.int32)  # (..., R)
    incl = torch.cumsum(cnt, dim=-1)
    nchunks = cnt.shape[-1]
    c = (incl < need.unsqueeze(-1)).sum(-1, keepdim=True).clamp(max=nchunks - 1)  # (..., 1)
    excl = (torch.gather(incl, -1, c) - torch.gather(cnt, -1, c)).squeeze(-1)
    sub = torch.gather(s.unflatten(-1, (-1, chunk)), -2, c.unsqueeze(-1).expand(c.shape[:-1] + (1, chunk)))
    start = c.squeeze(-1) * chunk + off
    return _nth_tie(sub.squeeze(-2), t.squeeze(-1), need - excl, n_valid if n_valid is not None else n, start)


def _rule(s: Tensor, k: Tensor) -> Tuple[Tensor, Tensor]:
    """Pure: per row, the threshold score ``t`` and the cut index of kept ties.

    The top ``k`` of a row are exactly the entries with ``score > t``, plus
    the entries with ``score == t`` at an index ``< cut``.
    """
    n = s.shape[-1]
    fdt, idt, _ = _key_dtypes(s.dtype)
    kstar, greater = _kth(s, k)
    t = keys_to_float(kstar.to(idt)).to(s.dtype)
    need = k.expand(kstar.shape) - greater  # ties to keep, >= 0
    pos = _nth_tie(s, t, need)
    cut = torch.where(need > 0, pos + 1, torch.zeros_like(pos))
    return t, cut


def _apply_rule(s: Tensor, t: Tensor, cut: Tensor) -> Tensor:
    """Pure: ``key(s) > key(t)  or  (key(s) == key(t) and index < cut)``, per row.

    Written so that the per-entry work is a few float compares: nothing
    compares above a NaN ``t``, and a NaN entry is above any other ``t``.
    """
    n = s.shape[-1]
    idx = torch.arange(n, device=s.device, dtype=torch.int32 if n < 2**31 else torch.int64)
    early = idx < cut.unsqueeze(-1)
    t = t.unsqueeze(-1)
    t_nan = _isnan(t)
    return (s > t) | ((s == t) & early) | (_isnan(s) & (early | ~t_nan))


# ---------------------------------------------------------------------------
# the selection entry points used by the ops
# ---------------------------------------------------------------------------


def topk_keep(scores: Tensor, k: Tensor) -> Tensor:
    """Pure: exactly ``k`` kept entries per row of ``scores`` (last dim), ties to the lower index.

    Args:
        scores: Float ``(..., n)``; NaN ranks above ``+inf``.
        k: int64 tensor broadcastable to ``scores.shape[:-1]``, in ``[0, n]``.

    Returns:
        A bool tensor shaped like ``scores``. For long rows it is a pointwise
        expression of ``scores`` and two per-row numbers, so a consumer under
        ``torch.compile`` fuses it instead of reading a materialised mask.
    """
    s = _scores(scores)
    n = s.shape[-1]
    k = k.expand(s.shape[:-1])
    if n <= PLANES_N:
        return _planes_keep(s, k)
    if n <= PAIRWISE_N:
        return _pairwise_keep(s, k)
    t, cut = _rule(s, k)
    return _apply_rule(s, t, cut)


def threshold_keep(scores: Tensor, thresholds: Tensor) -> Tensor:
    """Pure: ``scores >= thresholds`` in the key order (``thresholds`` broadcasts)."""
    s = _scores(scores)
    return key_ge(s, thresholds.detach().to(s.dtype))


def _fusable(scores: Tensor, k: Tensor) -> bool:
    n = scores.shape[-1]
    total = scores.numel()
    return 2 <= n <= _LANES and _LANES % n == 0 and total % _LANES == 0 and total >= 4 * _LANES and k.numel() == 1


#: (n, device) -> int32 ``arange(16) % n``: the position of each lane in its group of ``n``.
_LANE_POS: Dict[Tuple[int, torch.device], Tensor] = {}


def _lane_pos(n: int, device: torch.device) -> Tensor:
    """Pure (cached): the position of each of the 16 lanes in its group of ``n``.

    A stored tensor, created outside any trace, rather than ``arange(16) % n``
    in the graph: Inductor computes the latter with a scalar loop of index
    arithmetic inside the hot loop, while a captured tensor is one vector load.
    """
    key = (n, torch.device(device))
    if key not in _LANE_POS:
        _LANE_POS[key] = (torch.arange(_LANES, dtype=torch.int32) % n).to(device)
    return _LANE_POS[key]


for _n in (2, 4, 8, 16):  # the CPU tables exist before any trace
    _lane_pos(_n, torch.device("cpu"))


def _lane_ranks(rows: Tensor, shifted: Any, n: int) -> Tensor:
    """Pure: rank of each entry of ``rows`` (m, 16) within its group of ``n`` lanes.

    ``shifted(d)`` gives the (m, 16) scores ``d`` lanes to the right (may be
    any finite garbage where the lane ``+ d`` leaves the group).
    """
    lane = _lane_pos(n, rows.device)
    nan_self = _isnan(rows)
    rank = torch.zeros((), dtype=torch.int32, device=rows.device)
    for d in range(-(n - 1), n):
        if d == 0:
            continue
        inside = (lane >= -d) if d < 0 else (lane < n - d)  # the other bound always holds
        other = shifted(d)
        if d < 0:  # an earlier entry beats us when it is >= us
            beats = key_ge(other, rows)
        else:  # a later entry beats us when it is > us, i.e. not (us >= it)
            beats = ~((rows >= other) | nan_self)
        rank = rank + (inside & beats).to(torch.int32)
    return rank


def topk_where(scores: Tensor, k: Tensor, values: Tensor) -> Tensor:
    """Pure: ``where(topk_keep(scores, k), values, 0)`` along the last dim.

    For short rows (``n`` in 2, 4, 8, 16, a 0-d ``k``) this is one elementwise
    kernel over ``values``: each entry compares its score with the ``n - 1``
    others of its row through shifted reads of the flattened scores, so
    nothing but the result is written. Other shapes use :func:`topk_keep`.

    Args:
        scores: Float ``(..., n)``.
        k: int64 tensor broadcastable to ``scores.shape[:-1]``.
        values: Tensor shaped like ``scores``; never modified.
    """
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    if not _fusable(scores, k):
        return torch.where(topk_keep(scores, k), values, zero)
    s = _scores(scores).reshape(-1)
    v = values.reshape(-1)
    n = scores.shape[-1]
    total = s.shape[0]
    m = total // _LANES
    k32 = k.reshape(()).to(torch.int32)
    L = _LANES

    def block(rows_s: Tensor, shifted: Any, rows_v: Tensor) -> Tensor:
        return torch.where(_lane_ranks(rows_s, shifted, n) < k32, rows_v, zero)

    # Interior rows of 16 read their neighbours by plain shifted slices ...
    mid = block(s[L: total - L].view(m - 2, L),
                lambda d: s[L + d: total - L + d].view(m - 2, L),
                v[L: total - L].view(m - 2, L))
    # ... the first and last rows (whose shifted reads would leave the tensor) by
    # plane ranks of their groups: little code, where the shifted form needs padding.
    ends = [torch.where(topk_keep(s[lo: lo + L].view(-1, n), k.reshape(())).reshape(1, L), v[lo: lo + L].view(1, L), zero)
            for lo in (0, total - L)]
    return torch.cat([ends[0], mid, ends[1]], dim=0).reshape(values.shape)


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
    return topk_keep(x, kt).movedim(-1, d)


def threshold_mask(scores: Tensor, thresholds: Any) -> Tensor:
    """Pure: ``scores >= thresholds`` in the key order.

    A NaN score is kept against any non-NaN threshold (NaN ranks highest).

    Args:
        scores: Float tensor.
        thresholds: A number or a tensor broadcastable to ``scores``.
    """
    _check_float(scores, "threshold_mask", "scores")
    t = torch.as_tensor(thresholds, dtype=scores.dtype, device=scores.device)
    return threshold_keep(scores, t)


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
    s = _scores(t)
    _, idt, _ = _key_dtypes(s.dtype)
    return keys_to_float(_kth(s, kt)[0].to(idt))


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
    s = _scores(t)
    _, idt, _ = _key_dtypes(s.dtype)
    v1 = keys_to_float(_kth(s, kt)[0].to(idt))
    v2 = keys_to_float(_kth(s, kt + 1)[0].to(idt))
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
