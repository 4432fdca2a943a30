"""Pictures and tables of layouts and masks.

* :func:`draw_layout` writes a PNG of a spec (or spec tree) with matplotlib,
  the optional ``viz`` extra (``pip install "sparsekit_fx[viz]"``); matplotlib
  is imported only when drawing.
* :func:`sparsity_table` / :func:`print_sparsity_table` summarise sparsity per
  parameter as text and need nothing beyond torch.

In the picture every parameter the spec touches is a panel, side by side
(coupled parameters next to each other), one cell per element (a parameter
of more than two dims is shown as ``(dim 0, rest)``, a 1-d one as a column).
Kept blocks are filled with a pastel colour per block; blocks coupled across
parameters share their colour. Pruned blocks are dark grey, elements outside
the spec white. Thin lines separate blocks, thick coloured lines outline
scopes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .errors import ArgumentError, ParamError, describe
from .layout import scope_to_params
from .specs import BlockCoupling, BlockSpec, ScopeCoupling, ScopeSpec
from .maskio import expand_block_masks
from .tree import flatten_specs

__all__ = ["draw_layout", "sparsity_table", "print_sparsity_table", "layout_maps"]

_BLOCK_COLORS = [
    "#8ecae6", "#ffb703", "#a7c957", "#f4a3a8", "#cdb4db", "#f6bd60", "#84dcc6", "#b8c0ff",
    "#ffd6a5", "#caffbf", "#9bf6ff", "#ffc6ff", "#e9c46a", "#90be6d", "#bde0fe", "#f7a072",
]
_SCOPE_COLORS = ["#c1121f", "#003049", "#2a9d8f", "#7b2cbf", "#e76f51", "#1d3557", "#6a994e", "#9c6644"]
_PRUNED = "#3d3d3d"
_OUTSIDE = "#ffffff"


# ---------------------------------------------------------------------------
# pure maps (no matplotlib)
# ---------------------------------------------------------------------------


def _scope_of(spec: Any) -> Any:
    return ScopeSpec(spec, ()) if isinstance(spec, (BlockSpec, BlockCoupling)) else spec


def _scatter(scope: Any, layout_values: Tensor, fill: int) -> Dict[str, Tensor]:
    """Per-parameter int maps of values given in scope layout (``fill`` outside the views)."""
    return scope_to_params(scope, layout_values.to(torch.int64), fill)


def layout_maps(tree: Any) -> Dict[str, Tuple[Tensor, Tensor]]:
    """Pure: for every parameter of ``tree``, its block-id and scope-id maps.

    Returns:
        ``{name: (block_id, scope_id)}``, int64 tensors of the parameter's
        shape; ``-1`` outside every view. Ids are unique over the tree, and
        the elements of one coupled block share its id in every parameter.
    """
    out: Dict[str, Tuple[Tensor, Tensor]] = {}
    blk0 = scp0 = 0
    for spec in flatten_specs(tree, "layout_maps")[0]:
        if not isinstance(spec, (BlockSpec, BlockCoupling, ScopeSpec, ScopeCoupling)):
            raise ArgumentError(describe("layout_maps", "tree", "block or scope specs", type(spec).__name__,
                                         "wrap a View in a BlockSpec first."))
        scope = _scope_of(spec)
        layout = tuple(scope.grid_shape) + (scope.numblk_per_scope(),)
        ids = torch.arange(scope.numblk(), dtype=torch.int64).reshape(layout) + blk0
        sids = torch.arange(scope.numscp(), dtype=torch.int64).reshape(tuple(scope.grid_shape) + (1,))
        sids = (sids + scp0).expand(layout).contiguous()
        bm, sm = _scatter(scope, ids, -1), _scatter(scope, sids, -1)
        for name in bm:
            if name in out:  # another spec of the tree covers other elements of this parameter
                b0, s0 = out[name]
                bm[name] = torch.where(bm[name] >= 0, bm[name], b0)
                sm[name] = torch.where(sm[name] >= 0, sm[name], s0)
            out[name] = (bm[name], sm[name])
        blk0 += scope.numblk()
        scp0 += scope.numscp()
    return out


def _as_2d(t: Tensor) -> Tensor:
    if t.ndim == 0:
        return t.reshape(1, 1)
    if t.ndim == 1:
        return t.reshape(-1, 1)
    return t.reshape(t.shape[0], -1)


def _element_masks(tree: Any, masks: Any) -> Optional[Dict[str, Tensor]]:
    if masks is None:
        return None
    if isinstance(masks, Mapping):
        return {k: v.detach().cpu() != 0 for k, v in masks.items()}
    return {k: v.cpu() for k, v in expand_block_masks(tree, masks).items()}


# ---------------------------------------------------------------------------
# drawing
# ---------------------------------------------------------------------------


def _require_matplotlib() -> Any:
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:  # pragma: no cover - exercised by monkeypatching in tests
        raise ImportError(
            "sparsekit_fx.viz.draw_layout needs matplotlib, the optional 'viz' extra. "
            "Fix: pip install 'sparsekit_fx[viz]' (or pip install matplotlib).") from e
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure state
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    return Figure, LineCollection, Line2D, Patch


def _rgb(hex_color: str) -> Tuple[float, float, float]:
    h = hex_color.lstrip("#")
    return tuple(int(h[i:i + 2], 16) / 255.0 for i in (0, 2, 4))  # type: ignore[return-value]


def _edges(ids: Tensor) -> Tuple[List[Any], List[Any]]:
    """Segments on cell borders where ``ids`` changes (grid coords, y down), and their left/upper id."""
    rows, cols = ids.shape
    segs, owners = [], []
    pad = torch.full((rows + 2, cols + 2), -1, dtype=torch.int64)
    pad[1:-1, 1:-1] = ids
    vdiff = (pad[1:-1, 1:] != pad[1:-1, :-1]).nonzero().tolist()  # border left of column c
    for r, c in vdiff:
        owner = int(max(pad[r + 1, c], pad[r + 1, c + 1]))
        if owner >= 0:
            segs.append([(c, r), (c, r + 1)])
            owners.append(owner)
    hdiff = (pad[1:, 1:-1] != pad[:-1, 1:-1]).nonzero().tolist()  # border above row r
    for r, c in hdiff:
        owner = int(max(pad[r, c + 1], pad[r + 1, c + 1]))
        if owner >= 0:
            segs.append([(c, r), (c + 1, r)])
            owners.append(owner)
    return segs, owners


def draw_layout(spec: Any, masks: Any = None, path: Union[str, "os.PathLike[str]"] = "layout.png", *,
                max_rows: int = 32, max_cols: int = 64, title: Optional[str] = None, cell: float = 0.16,
                dpi: int = 110) -> str:
    """Mutates (the file system): draw a spec or spec tree, optionally with masks, to a PNG.

    Args:
        spec: A block or scope spec, or a tuple of them (a spec tree).
        masks: ``None`` (layout only), element masks ``{name: BoolTensor}``,
            or block masks as returned by :func:`~sparsekit_fx.block_masks`
            for ``spec`` (one tensor per spec, in the tree's structure).
        path: Where to write the PNG.
        max_rows, max_cols: Crop each panel to this many rows and columns.
        title: Figure title.
        cell: Size of one element cell in inches.
        dpi: Resolution of the PNG.

    Returns:
        ``str(path)``.

    Raises:
        ImportError: matplotlib is not installed (with the install command).
        SparseKitError: The spec or masks are malformed.
    """
    Figure, LineCollection, Line2D, Patch = _require_matplotlib()
    flatten_specs(spec, "draw_layout")  # a spec or a spec tree
    maps = layout_maps(spec)
    keep = _element_masks(spec, masks)
    names = list(maps)
    shapes = {n: _as_2d(maps[n][0]).shape for n in names}
    shown = {n: (min(shapes[n][0], max_rows), min(shapes[n][1], max_cols)) for n in names}
    height = max(r for r, _ in shown.values())
    widths = [c for _, c in shown.values()]
    fig_w = max(cell * (sum(widths) + 3 * len(widths)), 6.5)
    fig_h = cell * height + 2.4
    fig = Figure(figsize=(fig_w, fig_h))
    axes = fig.subplots(1, len(names), squeeze=False, gridspec_kw={"width_ratios": [max(w, 2) for w in widths]})
    for ax, name in zip(axes[0], names):
        r, c = shown[name]
        bid = _as_2d(maps[name][0])[:r, :c]
        sid = _as_2d(maps[name][1])[:r, :c]
        img = torch.ones(r, c, 3)
        for b in torch.unique(bid).tolist():
            if b >= 0:
                img[bid == b] = torch.tensor(_rgb(_BLOCK_COLORS[b % len(_BLOCK_COLORS)]))
        img[bid < 0] = torch.tensor(_rgb(_OUTSIDE))
        frac = ""
        if keep is not None and name in keep:
            k = _as_2d(keep[name])
            img[(~k[:r, :c]) & (bid >= 0)] = torch.tensor(_rgb(_PRUNED))
            frac = f", {k.float().mean().item():.0%} kept"
        ax.imshow(img.numpy(), interpolation="nearest", extent=(0, c, r, 0))
        bsegs, _ = _edges(bid)
        ax.add_collection(LineCollection(bsegs, colors="#ffffff", linewidths=0.6))
        ssegs, sown = _edges(sid)
        ax.add_collection(LineCollection(ssegs, colors=[_SCOPE_COLORS[s % len(_SCOPE_COLORS)] for s in sown],
                                         linewidths=2.0))
        ax.set_xlim(-0.3, c + 0.3)
        ax.set_ylim(r + 0.3, -0.3)
        ax.set_aspect("equal")
        ax.set_axis_off()
        full = tuple(maps[name][0].shape)
        crop = "" if (r, c) == tuple(shapes[name]) else f"\n(first {r}x{c} of {shapes[name][0]}x{shapes[name][1]})"
        ax.set_title(f"{name} {full}{frac}{crop}", fontsize=8)
    handles = [
        Patch(facecolor=_BLOCK_COLORS[0], edgecolor="none", label="kept block (colour shared by coupled blocks)"),
        Patch(facecolor=_PRUNED, edgecolor="none", label="pruned block"),
        Patch(facecolor=_OUTSIDE, edgecolor="#999999", label="outside the spec"),
        Line2D([0], [0], color="#999999", lw=0.8, label="block boundary"),
        Line2D([0], [0], color=_SCOPE_COLORS[0], lw=2.0, label="scope boundary"),
    ]
    if keep is None:
        handles.pop(1)
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 0.95 if title else 1))
    fig.savefig(path, dpi=dpi)
    return str(path)


# ---------------------------------------------------------------------------
# tables (no matplotlib)
# ---------------------------------------------------------------------------


def sparsity_table(params: Any, masks: Optional[Mapping] = None, *, names: Optional[Sequence[str]] = None) -> str:
    """Pure: a text table of sparsity per parameter, with a total row.

    Args:
        params: An ``nn.Module`` or a mapping of name to tensor.
        masks: Optional element masks ``{name: mask}``; when given, kept
            counts come from the masks, else from the non-zeros of ``params``.
        names: Only these parameters (default: every parameter, or every
            masked one when ``masks`` is given).

    Returns:
        The table as a string (``print`` it, or use :func:`print_sparsity_table`).
    """
    if isinstance(params, nn.Module):
        params = dict(params.named_parameters())
    if not isinstance(params, Mapping):
        raise ParamError(describe("sparsity_table", "params", "an nn.Module or a mapping of name -> Tensor",
                                  type(params).__name__, "pass the model or dict(model.named_parameters())."))
    if names is None:
        names = list(masks) if masks is not None else list(params)
    rows = []
    tot_n = tot_k = 0
    for n in names:
        src = masks[n] if masks is not None and n in masks else params[n]
        numel = int(src.numel())
        kept = int((src != 0).sum().item())
        tot_n += numel
        tot_k += kept
        shape = tuple(params[n].shape) if n in params else tuple(src.shape)
        rows.append((n, str(shape), numel, kept))
    w = max([len("parameter"), len("total")] + [len(r[0]) for r in rows])
    sw = max([len("shape")] + [len(r[1]) for r in rows])
    head = f"{'parameter':<{w}}  {'shape':>{sw}}  {'numel':>9}  {'nonzero':>9}  {'sparsity':>8}"
    lines = [head, "-" * len(head)]
    for n, s, numel, kept in rows:
        lines.append(f"{n:<{w}}  {s:>{sw}}  {numel:>9}  {kept:>9}  {1 - kept / max(numel, 1):>8.1%}")
    lines.append("-" * len(head))
    lines.append(f"{'total':<{w}}  {'':>{sw}}  {tot_n:>9}  {tot_k:>9}  {1 - tot_k / max(tot_n, 1):>8.1%}")
    return "\n".join(lines)


def print_sparsity_table(params: Any, masks: Optional[Mapping] = None, *, names: Optional[Sequence[str]] = None
                         ) -> None:
    """Mutates (stdout): print :func:`sparsity_table`."""
    print(sparsity_table(params, masks, names=names))
