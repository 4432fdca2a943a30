"""Proximal maps of the block group norm, on view tensors (no validation).

For a (coupled) block with values ``v`` and threshold ``t >= 0``:

* Euclidean: ``prox(v) = v * max(0, 1 - t / ||v||)``.
* Diagonal metric ``H = diag(h)``, ``h > 0`` (e.g. Adam's ``sqrt(v_hat) + eps``):
  ``prox(v) = argmin_x 1/2 (x - v)^T H (x - v) + t ||x||``. With ``a = h * v``
  the block is exactly 0 iff ``||a|| <= t``; otherwise ``x = a / (h + mu)``
  where ``mu > 0`` solves ``mu * ||x(mu)|| = t``.

The scalar ``mu`` is found per block with a fixed number of passes (no
data-dependent exit, so everything compiles to one graph). Writing
``rho = 1 / mu`` turns the equation into the classic secular equation
``||v / (1/h + rho)|| = t``, whose ``G(rho) = 1/||p(rho)|| - 1/t`` is
increasing and concave (More & Sorensen). Hence:

* the start ``mu_0 = t * h_eff / (||a|| - t)`` (``h_eff`` the
  ``a^2``-weighted mean of ``h``) is one Newton step on ``G`` from ``rho = 0``
  and lies on the safe side of the root;
* Newton on ``G`` then increases ``rho`` monotonically to the root and needs no
  bracket; we take Halley steps (one more moment per pass, cubic
  convergence), limited to at most twice the Newton step forward and to a
  doubling of ``mu`` backward, which only rounding noise can ask for.

Every pass reads the block once and does one division per element. The
relative residual ``|mu ||x|| - t| / t`` reaches float32 rounding level
(<= 4 eps) after 3 passes (the float32 default, :data:`PASSES`) for
Adam-like conditioners and for ``h`` log-normally spread with sigma <= 2
inside a block (ratios up to ~10^4); sigma = 3 (ratios ~10^7) needs 4.
Float64 reaches its own rounding level after 4-5 passes (default
:data:`PASSES_FLOAT64`). Iterates approach the root from the over-shrinking
side, so an unconverged block is shrunk slightly too much, never too little.

Gradients are implicit-function gradients: the last pass also returns a
zero-valued term ``-(psi(mu; v, h, t) - stop_grad(psi)) / stop_grad(psi')`` with
``psi = mu ||x(mu)|| - t``, evaluated at the iterate that pass starts from
(already at the dtype's precision whenever one pass fewer would do, e.g. for
Adam-like conditioners), so it costs no extra pass over the data. No custom
``autograd.Function`` is used (its backward is ignored under
``torch.compile`` with ``torch.func`` transforms in this torch build), so the
formula works under ``grad``, ``vmap`` and ``compile`` alike. Zeroed blocks
get zero gradients through ``mu`` and finite gradients everywhere.

Tensors here are *view tensors*: one per ``block.views()`` entry, shape
``(*lead, *view.shape)`` with optional leading batch dims. Grid tensors are
``(*lead, *block.grid_shape)`` in the coupled grid (or 0-d). Half inputs are
computed in float32, float64 in float64.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .layout import crop_trailing, grid_to_interleaved, interleave, odd_dims, permute_grid, unpermute_grid
from .specs import BlockSpec

__all__ = [
    "PASSES",
    "PASSES_FLOAT64",
    "default_passes",
    "euclidean_prox",
    "preconditioned_prox",
    "solve_mu",
    "block_sum",
    "to_parts",
]

#: Default number of solver passes over each block in float32 (and half) precision.
PASSES = 3
#: Default number of solver passes when computing in float64.
PASSES_FLOAT64 = 5

# Limits of one Halley step, as multiples of the Newton step on G(rho).
_MIN_DENOM = 0.5  # 1 - kappa >= 1/2: at most twice the Newton step forward ...
_MAX_BACKWARD = -0.5  # ... and mu grows by at most 2x per pass.


# ---------------------------------------------------------------------------
# blocks <-> grids for a BlockSpec or BlockCoupling
# ---------------------------------------------------------------------------


def _specs(block: object) -> Tuple[Sequence[BlockSpec], Sequence[Tuple[int, ...]]]:
    if isinstance(block, BlockSpec):
        return (block,), (tuple(range(block.ndim)),)
    return block.specs, block.orders  # type: ignore[attr-defined]


def _inter(x: Tensor, spec: BlockSpec, value: float = 0.0) -> Tensor:
    """View-shaped ``x`` as ``(*lead, G0, b0, G1, b1, ...)`` (unchanged for 0-d views).

    Partial edge blocks (``spec.pad``) are padded with ``value``: 0 for values
    (padding adds nothing to a block's norm), 1 for the metric ``h`` (any
    positive number: it only ever multiplies a padded 0).
    """
    return x if spec.ndim == 0 else interleave(x, spec.shape, spec.padding, value)


def _sum_blocks(t: Tensor, spec: BlockSpec) -> Tensor:
    """Interleaved ``t`` summed over each block: ``(*lead, *spec.grid_shape)``."""
    return t if spec.ndim == 0 else t.sum(odd_dims(spec.ndim))


def block_sum(block: object, parts: Sequence[Tensor]) -> Tensor:
    """Pure: per-(coupled)-block sums of interleaved per-spec tensors.

    Args:
        block: A BlockSpec or BlockCoupling.
        parts: One interleaved tensor per coupled spec (see :func:`to_parts`).

    Returns:
        ``(*lead, *block.grid_shape)``: the sum over all elements of each
        coupled block, across every coupled spec.
    """
    specs, orders = _specs(block)
    sums = [permute_grid(_sum_blocks(p, s), o) for p, s, o in zip(parts, specs, orders)]
    total = sums[0]
    for g in sums[1:]:
        total = total + g
    return total


def to_parts(block: object, g: Tensor) -> List[Tensor]:
    """Pure: a coupled-grid tensor broadcastable over each spec's interleaved tensor.

    A 0-d ``g`` is returned as is for every spec.
    """
    specs, orders = _specs(block)
    if g.ndim == 0:
        return [g for _ in specs]
    return [g if s.ndim == 0 else grid_to_interleaved(unpermute_grid(g, o), s.ndim) for s, o in zip(specs, orders)]


def _acc(*ts: Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in ts) else torch.float32


def default_passes(dtype: torch.dtype) -> int:
    """Pure: the default number of solver passes for computing in ``dtype``."""
    return PASSES_FLOAT64 if dtype == torch.float64 else PASSES


def _outputs(block: object, parts: Sequence[Tensor], xs: Sequence[Tensor], fin: Optional[Tensor] = None,
             elementwise: bool = False) -> List[Tensor]:
    """Interleaved results back to view shape, padding cropped, in the input dtypes.

    Where ``fin`` (coupled-grid shaped; interleaved-shaped if ``elementwise``)
    is False the input elements are returned bit for bit (NaN payloads
    included): blocks holding NaN or Inf pass through unchanged.
    """
    specs, _ = _specs(block)
    if fin is None:
        fins: Sequence[Optional[Tensor]] = [None] * len(specs)
    else:
        fins = [fin] if elementwise else to_parts(block, fin)
    out = []
    for p, x, s, f in zip(parts, xs, specs, fins):
        p = p.to(x.dtype)
        if f is not None:
            p = torch.where(f, p, _inter(x, s))
        if s.pad:
            lead = tuple(x.shape[: x.ndim - s.ndim])
            p = crop_trailing(p.reshape(lead + tuple(s.padded_shape)), tuple(x.shape[x.ndim - s.ndim :]))
        out.append(p.reshape(x.shape))
    return out


# ---------------------------------------------------------------------------
# Euclidean
# ---------------------------------------------------------------------------


def euclidean_prox(block: object, xs: Sequence[Tensor], t: Tensor) -> List[Tensor]:
    """Pure: group soft thresholding ``x * max(0, 1 - t/||x||)`` per (coupled) block.

    Args:
        block: A BlockSpec or BlockCoupling.
        xs: View tensors, one per ``block.views()`` entry.
        t: Thresholds, 0-d or ``(*lead, *block.grid_shape)``; negative
            values act as 0.

    Returns:
        New view tensors (same shapes and dtypes). All-zero blocks stay zero
        and get finite (zero) gradients. Blocks holding NaN or Inf (their
        norm is not finite) are returned unchanged.
    """
    specs, _ = _specs(block)
    acc = _acc(*xs, t)
    vs = [_inter(x.to(acc), s) for x, s in zip(xs, specs)]
    t = t.to(acc).clamp_min(0)
    n2 = block_sum(block, [v * v for v in vs])
    td = t.detach()
    fin = torch.isfinite(n2.detach())  # NaN/Inf blocks pass through unchanged (the NaN/Inf policy)
    keep = (torch.sqrt(n2.detach()) > td) | (td <= 0) | ~fin  # t = 0 is the identity, zero blocks included
    safe = keep & fin & (n2.detach() > 0)
    shrink = 1 - t / torch.sqrt(torch.where(safe, n2, 1.0))
    factor = torch.where(safe, shrink, torch.where(keep, 1.0, 0.0))
    return _outputs(block, [v * f for v, f in zip(vs, to_parts(block, factor))], xs, fin)


# ---------------------------------------------------------------------------
# diagonal metric
# ---------------------------------------------------------------------------


def _moments(block: object, a: Sequence[Tensor], h: Sequence[Tensor], mu: Tensor) -> Tuple[Tensor, ...]:
    """Sums at ``mu``: ``N2 = sum y^2``, ``S1 = sum y^2 u``, ``S2 = sum y^2 u^2``.

    ``y = a / (h + mu)`` is the candidate solution and ``u = h / (h + mu)``.
    """
    y2s, y2u, y2uu = [], [], []
    for ai, hi, mi in zip(a, h, to_parts(block, mu)):
        r = 1.0 / (hi + mi)
        y = ai * r
        u = hi * r
        y2 = y * y
        y2s.append(y2)
        y2u.append(y2 * u)
        y2uu.append(y2 * u * u)
    return block_sum(block, y2s), block_sum(block, y2u), block_sum(block, y2uu)


def _halley(mu: Tensor, n2: Tensor, s1: Tensor, s2: Tensor, t: Tensor, t_safe: Tensor) -> Tensor:
    """One Halley step on ``G(rho) = 1/(mu ||y||) - 1/t``, written in ``mu`` (detached values)."""
    n = torch.sqrt(n2)
    e = (mu * n - t) / t_safe  # relative residual; >= 0 on the safe side
    q = n2 / s1  # 1 / (y^2-weighted mean of u) >= 1
    f = e * q  # Newton: rho_new = rho * (1 + f)
    kappa = 1.5 * e * ((s2 / s1) * q - 1.0)  # G G'' / (2 G'^2) >= 0 on the safe side
    f = f / torch.clamp(1.0 - kappa, min=_MIN_DENOM)
    return mu / (1.0 + torch.clamp(f, min=_MAX_BACKWARD))


def _metric_inputs(block: object, xs: Sequence[Tensor], hs: Sequence[Tensor], t: Tensor) -> Tuple[Any, ...]:
    """Pure: ``(specs, acc, vs, hs, t, a)``: values and metric interleaved in the accumulation
    dtype (metric padding 1), thresholds clamped at 0, and ``a = h * v``."""
    specs, _ = _specs(block)
    acc = _acc(*xs, *hs, t)
    vs = [_inter(x.to(acc), s) for x, s in zip(xs, specs)]
    hs_ = [_inter(h.to(acc), s, 1.0) for h, s in zip(hs, specs)]
    a = [h * v for h, v in zip(hs_, vs)]
    return specs, acc, vs, hs_, t.to(acc).clamp_min(0), a


def solve_mu(
    block: object, xs: Sequence[Tensor], hs: Sequence[Tensor], t: Tensor, passes: Optional[int] = None
) -> Tuple[Tensor, Tensor]:
    """Pure: the multiplier ``mu`` of the diagonal-metric prox of every (coupled) block.

    Args:
        block: A BlockSpec or BlockCoupling.
        xs: View tensors of the values ``v``.
        hs: View tensors of the diagonal metric ``h`` (> 0), same shapes.
        t: Thresholds, 0-d or ``(*lead, *block.grid_shape)``, >= 0.
        passes: Solver passes (>= 1); ``None`` picks :func:`default_passes`.

    Returns:
        ``(mu, keep)`` in the coupled grid. ``keep`` is True where the block
        survives (``||h v|| > t``, or ``t == 0``); ``mu`` is 1 where it does
        not, and for blocks whose ``h v`` is not finite (NaN/Inf, which
        :func:`preconditioned_prox` passes through unchanged; ``keep`` is
        False there). ``mu`` carries the implicit-function gradient (its value
        is the solution).
    """
    _, acc, _, hs_, t, a = _metric_inputs(block, xs, hs, t)
    mu, keep, _ = _solve(block, a, hs_, t, passes or default_passes(acc))
    return mu, keep


def _solve(block: object, a: Sequence[Tensor], h: Sequence[Tensor], t: Tensor,
           passes: int) -> Tuple[Tensor, Tensor, Tensor]:
    ad = [x.detach() for x in a]
    hd = [x.detach() for x in h]
    td = t.detach()
    a2 = block_sum(block, [x * x for x in ad])
    a2h = block_sum(block, [x * x * y for x, y in zip(ad, hd)])
    # Blocks with NaN/Inf in h * v (or h * v h overflowing) pass through unchanged: no finite solution.
    fin = torch.isfinite(a2) & torch.isfinite(a2h)
    norm = torch.sqrt(a2)
    # Survivors: ||a|| > t (compared after the same rounding as the gap below,
    # so the gap is > 0), and every block when t = 0 (the prox is the identity).
    keep = ((norm > td) | (td <= 0)) & fin
    a2_safe = torch.where(a2 > 0, a2, 1.0)
    gap = torch.where(norm > td, norm - td, 1.0)
    t_safe = torch.where(td > 0, td, 1.0)
    # Newton step on G(rho) from rho = 0 (mu = inf): mu_0 = t * h_eff / (||a|| - t).
    mu = torch.where(keep, td * a2h / (a2_safe * gap), 1.0)
    for _ in range(passes - 1):
        n2, s1, s2 = _moments(block, ad, hd, mu)
        n2 = torch.where(keep, n2, 1.0)
        s1 = torch.where(keep & (s1 > 0), s1, 1.0)
        mu = torch.where(keep, _halley(mu, n2, s1, s2, td, t_safe), 1.0)
    # Last pass: its moments are taken with autograd so that the zero-valued
    # implicit-gradient term below can be differentiated; values are detached.
    prev = mu.detach()
    n2g, s1g, s2g = _moments(block, a, h, prev)
    n2 = torch.where(keep, n2g.detach(), 1.0)
    s1 = torch.where(keep & (s1g.detach() > 0), s1g.detach(), 1.0)
    mu = torch.where(keep, _halley(prev, n2, s1, s2g.detach(), td, t_safe), 1.0)
    n_g = torch.sqrt(torch.where(keep & (n2g.detach() > 0), n2g, 1.0))
    psi = prev * n_g - t  # = 0 at the solution; d psi / d mu = S1 / N
    step = (psi - psi.detach()) * (n_g / s1).detach()
    return mu - torch.where(keep, step, 0.0), keep, fin


def preconditioned_prox(
    block: object, xs: Sequence[Tensor], hs: Sequence[Tensor], t: Tensor, passes: Optional[int] = None
) -> List[Tensor]:
    """Pure: ``argmin_x 1/2 (x-v)^T diag(h) (x-v) + t ||x||`` per (coupled) block.

    Args:
        block: A BlockSpec or BlockCoupling.
        xs: View tensors of the values ``v``, one per ``block.views()`` entry.
        hs: View tensors of the diagonal metric ``h`` (> 0), same shapes.
        t: Thresholds, 0-d or ``(*lead, *block.grid_shape)``; negative
            values act as 0.
        passes: Solver passes (>= 1); ``None`` picks :func:`default_passes`
            of the computation dtype. See the module docstring.

    Returns:
        New view tensors (same shapes and dtypes as ``xs``). Blocks with
        ``||h v|| <= t`` are exactly 0. Blocks of one element use the closed
        form ``v - t sign(v) / h``. Blocks whose ``h v`` holds NaN or Inf
        (NaN/Inf in the values or the conditioner) are returned unchanged.
    """
    specs, acc, vs, hs_, t, a = _metric_inputs(block, xs, hs, t)
    if sum(s.numel_per_block() for s in specs) == 1:
        (v,), (h,), (ai,) = vs, hs_, a
        (tp,) = to_parts(block, t)
        fin = torch.isfinite(ai.detach())
        keep = (ai.abs() > tp) | (tp <= 0)
        out = torch.where(keep.detach(), v - tp * torch.sign(v) / h, 0.0)
        return _outputs(block, [out], xs, fin, elementwise=True)
    mu, keep, fin = _solve(block, a, hs_, t, passes or default_passes(acc))
    outs = [
        torch.where(k, ai / (hi + m), 0.0)
        for ai, hi, m, k in zip(a, hs_, to_parts(block, mu), to_parts(block, keep))
    ]
    return _outputs(block, outs, xs, fin)
