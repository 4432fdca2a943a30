"""Plain-loop reference implementations, written independently of the library.

Everything here loops over blocks and scopes one at a time in Python, using
only ``torch.as_strided`` on a private copy to realise a View (the seed's
definition of a view). Tests compare every vectorised op against these loops.
"""

from __future__ import annotations

import itertools
import math

import torch

import sparsekit_fx as skf


def view_tensor(param, view):
    """The view's elements, via as_strided on a contiguous private copy."""
    flat = param.detach().contiguous().reshape(-1).clone()
    return torch.as_strided(flat, view.shape, view.stride, view.offset)


def view_positions(view):
    """Flat parameter index of each view element, as a view-shaped int tensor."""
    pos = torch.empty(view.shape, dtype=torch.long)
    for idx in itertools.product(*[range(n) for n in view.shape]):
        pos[idx] = view.offset + sum(i * s for i, s in zip(idx, view.stride))
    return pos


def block_slice(bspec, gidx):
    return tuple(slice(g * b, (g + 1) * b) for g, b in zip(gidx, bspec.shape))


def spec_index(order, cidx):
    """Grid index of a coupled spec whose grid is permuted by ``order``."""
    sidx = [0] * len(order)
    for k, o in enumerate(order):
        sidx[o] = cidx[k]
    return tuple(sidx)


def coupled_parts(block, cidx):
    """(BlockSpec, spec grid index) pairs making up coupled block ``cidx``."""
    if isinstance(block, skf.BlockSpec):
        return [(block, tuple(cidx))]
    return [(s, spec_index(o, cidx)) for s, o in zip(block.specs, block.orders)]


def block_elements(source, block, cidx):
    """All elements of (coupled) block ``cidx``, concatenated in spec order."""
    parts = []
    for s, sidx in coupled_parts(block, cidx):
        x = view_tensor(source[s.view.param], s.view)
        parts.append(x[block_slice(s, sidx)].reshape(-1))
    return torch.cat(parts)


def lp(x, p):
    x = x.double()
    if p == math.inf:
        return x.abs().max()
    if p == -math.inf:
        return x.abs().min()
    if p == 0:
        return (x != 0).sum().double()
    return x.abs().pow(p).sum().pow(1.0 / p)


def grid_iter(shape):
    return itertools.product(*[range(n) for n in shape])


def block_reduce(source, block, fn):
    out = torch.empty(block.grid_shape, dtype=torch.float64)
    for cidx in grid_iter(block.grid_shape):
        out[cidx] = fn(block_elements(source, block, cidx))
    return out


def scope_blocks(scope, sidx):
    """Coupled-block indices of scope ``sidx``, in the scope's flattened order.

    For a ScopeCoupling: (ScopeSpec, block index) pairs, scopes in listed order.
    """
    if isinstance(scope, skf.ScopeSpec):
        return [
            (scope, tuple(s * n + l for s, n, l in zip(sidx, scope.shape, local)))
            for local in grid_iter(scope.shape)
        ]
    out = []
    for sc, o in zip(scope.scopes, scope.orders):
        out += scope_blocks(sc, spec_index(o, sidx))
    return out


def scope_scores(source, scope, p=2):
    n = scope.numblk_per_scope()
    out = torch.empty(tuple(scope.grid_shape) + (n,), dtype=torch.float64)
    for sidx in grid_iter(scope.grid_shape):
        for j, (sc, bidx) in enumerate(scope_blocks(scope, sidx)):
            out[sidx + (j,)] = lp(block_elements(source, sc.block, bidx), p)
    return out


def rank_key(v):
    """Sort key putting NaN above +inf and -0.0 equal to +0.0."""
    v = float(v)
    return (1, 0.0) if math.isnan(v) else (0, v + 0.0)


def topk_row(row, k):
    """Indices kept: the k largest, ties to the lower index."""
    order = sorted(range(len(row)), key=lambda j: (tuple(-c for c in rank_key(row[j])), j))
    return set(order[:k])


def keep_blocks(scope, scores, nnz=None, thresholds=None):
    """Bool (*scope.grid, n) keep mask from scores by loops."""
    keep = torch.zeros(scores.shape, dtype=torch.bool)
    for sidx in grid_iter(scope.grid_shape):
        row = scores[sidx].tolist()
        if nnz is not None:
            k = nnz if isinstance(nnz, int) else int(nnz[sidx]) if nnz.ndim else int(nnz)
            for j in topk_row(row, k):
                keep[sidx + (j,)] = True
        else:
            t = float(thresholds if not torch.is_tensor(thresholds) or thresholds.ndim == 0 else thresholds[sidx])
            for j, v in enumerate(row):
                keep[sidx + (j,)] = rank_key(v) >= rank_key(t)
    return keep


def element_masks(params, scope, keep):
    """Element masks {name: bool param-shaped} from a scope-layout keep mask."""
    out = {}
    for v in scope.views():
        out.setdefault(v.param, torch.ones(v.param_shape, dtype=torch.bool))
    for sidx in grid_iter(scope.grid_shape):
        for j, (sc, bidx) in enumerate(scope_blocks(scope, sidx)):
            if keep[sidx + (j,)]:
                continue
            for s, gidx in coupled_parts(sc.block, bidx):
                pos = view_positions(s.view)[block_slice(s, gidx)].reshape(-1)
                flat = out[s.view.param].reshape(-1)
                flat[pos] = False
    return out


def hard_threshold(params, scope, keep):
    m = element_masks(params, scope, keep)
    out = dict(params)
    for name, mask in m.items():
        out[name] = torch.where(mask, params[name], torch.zeros((), dtype=params[name].dtype))
    return out


# ---------------------------------------------------------------------------
# proximal operators (soft thresholding), one block at a time in float64
# ---------------------------------------------------------------------------


def prox_block(v, t, h=None):
    """Exact prox of ``t ||x||`` for one block in float64: ``(x, mu)``.

    Euclidean when ``h`` is None. Otherwise ``argmin 1/2 (x-v)^T diag(h) (x-v)
    + t ||x||`` by bisection on ``mu`` in the bracket
    ``[t min(h), t max(h)] / (||h v|| - t)`` down to float64 resolution.
    ``mu`` is None for zeroed blocks.
    """
    v = v.double()
    t = float(t)
    if h is None:
        n = float(v.norm())
        if n <= t:
            return torch.zeros_like(v), None
        return v * (1 - t / n), t / (n - t)
    h = h.double()
    a = h * v
    na = float(a.norm())
    if na <= t:
        return torch.zeros_like(v), None
    if t == 0:
        return v.clone(), 0.0
    lo = t * float(h.min()) / (na - t)
    hi = t * float(h.max()) / (na - t)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if mid * float((a / (h + mid)).norm()) < t:
            lo = mid
        else:
            hi = mid
    mu = 0.5 * (lo + hi)
    return a / (h + mu), mu


def _block_items(spec, thresholds):
    """(block spec, coupled block index, threshold) for every block of ``spec``."""
    def thr(idx):
        if not torch.is_tensor(thresholds):
            return float(thresholds)
        return float(thresholds) if thresholds.ndim == 0 else float(thresholds[idx])

    if isinstance(spec, (skf.BlockSpec, skf.BlockCoupling)):
        return [(spec, cidx, thr(cidx)) for cidx in grid_iter(spec.grid_shape)]
    out = []
    for sidx in grid_iter(spec.grid_shape):
        for sc, bidx in scope_blocks(spec, sidx):
            out.append((sc.block, bidx, thr(sidx)))
    return out


def soft_threshold(params, spec, thresholds, conditioners=None, scale=False):
    """Loop reference of ``skf.soft_threshold`` in float64 (returns float64 params)."""
    # contiguous, so that reshape(-1) below is a view and the writes land (params may be non-contiguous)
    out = {k: v.detach().double().contiguous().clone() for k, v in params.items()}
    for block, cidx, t in _block_items(spec, thresholds):
        if scale:
            t = t * math.sqrt(block.numel_per_block())
        v = block_elements(params, block, cidx)
        h = None if conditioners is None else block_elements(conditioners, block, cidx)
        x, _ = prox_block(v, t, h)
        start = 0
        for s, sidx in coupled_parts(block, cidx):
            pos = view_positions(s.view)[block_slice(s, sidx)].reshape(-1)
            out[s.view.param].reshape(-1)[pos] = x[start : start + pos.numel()]
            start += pos.numel()
    return out
