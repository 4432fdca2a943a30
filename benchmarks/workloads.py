"""The benchmark workloads W1-W6 and their peers, as lazily built cases.

Each :class:`Case` is one row of the table: one implementation of one
workload. ``Case.make(sizes)`` builds the tensors and the callable to time
(compiling it, so compile time is never measured) and returns a
:class:`Prepared`. Shapes come from :class:`Sizes` (full or smoke).

Workloads (fp32; every sparsekit_fx op is compiled with ``fullgraph=True``):

* W1  2:4 on N x N (N = 2048 and 4096): ``hard_threshold`` and ``masks``.
* W2  (4, 4) blocks, keep half of each block-row.
* W3  global unstructured top 50% of one N x N matrix.
* W4  group-lasso prox, blocks (1, 64)            (needs ``skf.soft_threshold``).
* W5  Adam-preconditioned prox, blocks (1, 64)    (needs ``skf.soft_threshold``).
* W6  12-layer transformer tree (72 matrices, 85M params): coupled channel
  pruning of fc1 rows with fc2 columns (50%), then 2:4 on every matrix, as
  one spec tree in one compiled call.

Peers (skipped when not importable): sparsekit 0.1.5 eager (in place, its
Triton dispatch disabled for CPU), ``torch.ao.pruning.WeightNormSparsifier``
(``step()``: recomputes its masks in place) and ``torch.nn.utils.prune``.
"""

from __future__ import annotations

import copy
import importlib
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

import sparsekit_fx as skf

__all__ = ["BACKEND", "Sizes", "Case", "Prepared", "cases", "available", "w6_tree", "w6_step", "element_bool_buffers"]


# ---------------------------------------------------------------------------
# sizes
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """Shapes of every workload; ``smoke`` shrinks them so the suite runs in CI."""

    n: int = 4096  # W2-W5 and the large W1
    n_small: int = 2048  # the small W1
    layers: int = 12  # W6
    d_model: int = 768
    d_ff: int = 3072

    @classmethod
    def smoke(cls) -> "Sizes":
        return cls(n=128, n_small=64, layers=1, d_model=64, d_ff=256)


# ---------------------------------------------------------------------------
# cases
# ---------------------------------------------------------------------------


@dataclass
class Prepared:
    """A built case: the callable to time and what the harness needs around it."""

    op: Callable[[], Any]
    floor_tensors: List[Tensor]  # the tensors the floors run over (the op's inputs)
    io_bytes: int  # inputs + outputs of the op, the memory budget's base
    reset: Optional[Callable[[], None]] = None  # untimed, before every round (in-place ops)
    code: List[str] = field(default_factory=list)  # Inductor code of the compiled op, if any


@dataclass
class Case:
    """One table row: ``impl`` running ``workload``."""

    workload: str
    impl: str
    what: str
    floor: str  # the floor the target refers to: "oop" (pure ops) or "inplace"
    make: Callable[[Sizes], Prepared]
    target: Optional[float] = None
    requires: Tuple[str, ...] = ()  # "soft_threshold", "sparsekit"
    slow: bool = False  # peers: fewer rounds
    note: str = ""

    @property
    def id(self) -> str:
        wl = self.workload.replace("{n_small}²", "small").replace("{n}²", "").replace("{layers}L", "")
        key = f"{wl}-{self.impl}-{self.what}"
        return re.sub(r"[^A-Za-z0-9:.%-]+", "_", key).replace("_-", "-").strip("_")

    def label(self, sz: "Sizes") -> str:
        """Pure: the workload's name with its sizes filled in."""
        return self.workload.format(n=sz.n, n_small=sz.n_small, layers=sz.layers)


#: torch.compile backend of the sparsekit_fx rows; smoke runs use "eager" (Dynamo tracing, no C++ builds).
BACKEND = {"name": "inductor"}


def _compile(fn: Callable[..., Any], *args: Any) -> Tuple[Callable[..., Any], List[str]]:
    """Compile ``fn`` (fullgraph) and run it once on ``args``; return it and Inductor's code."""
    from torch._inductor.utils import run_and_get_code

    cf = torch.compile(fn, fullgraph=True, backend=BACKEND["name"])
    if BACKEND["name"] != "inductor":
        cf(*args)
        return cf, []
    _, code = run_and_get_code(cf, *args)
    return cf, code


def element_bool_buffers(code: List[str], min_numel: int) -> List[str]:
    """Pure: bool/uint8 buffers of at least ``min_numel`` elements that a compiled op allocates
    and does not return (element-level masks materialised on the hot path)."""
    found = []
    for src in code:
        returned = set()
        for m in re.finditer(r"return \((.*?)\)", src):
            returned |= {s.strip() for s in m.group(1).split(",") if s.strip()}
        for m in re.finditer(r"(buf\d+) = empty_strided_cpu\(\(([\d, ]*)\), \([\d, ]*\), torch\.(bool|uint8)\)", src):
            name, shape, dt = m.groups()
            numel = 1
            for s in [int(v) for v in shape.split(",") if v.strip()]:
                numel *= s
            if numel >= min_numel and name not in returned:
                found.append(f"{name}:{dt}[{shape.strip()}]")
    return found


def _randn(*shape: int, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g)


def _spec(name: str, shape: Tuple[int, int], block: Tuple[int, ...], scope: Tuple[int, ...]) -> skf.ScopeSpec:
    return skf.ScopeSpec(skf.BlockSpec(skf.View(name, shape), block), scope)


def _layouts(n: int) -> Dict[str, Tuple[Tuple[int, ...], Tuple[int, ...], Any]]:
    """W1-W3 layouts: block shape, scope shape, nnz (blocks kept per scope)."""
    return {
        "W1": ((1, 1), (1, 4), 2),
        "W2": ((4, 4), (1, -1), torch.tensor((n // 4) // 2)),
        "W3": ((1, 1), (), torch.tensor(n * n // 2)),
    }


def _fx_select(wl: str, n_of: Callable[[Sizes], int], masks_only: bool) -> Callable[[Sizes], Prepared]:
    def make(sz: Sizes) -> Prepared:
        n = n_of(sz)
        block, scope, nnz = _layouts(n)[wl]
        w = _randn(n, n)
        spec = _spec("w", (n, n), block, scope)
        params = {"w": w}
        if masks_only:
            def fn(p: Dict[str, Tensor], k: Any) -> Dict[str, Tensor]:
                return skf.masks(p, spec, nnz=k)
        else:
            def fn(p: Dict[str, Tensor], k: Any) -> Dict[str, Tensor]:
                return skf.hard_threshold(p, spec, nnz=k)
        cf, code = _compile(fn, params, nnz)
        out_bytes = n * n * (1 if masks_only else 4)
        return Prepared(lambda: cf(params, nnz), [w], 4 * n * n + out_bytes, code=code)

    return make


def _fx_write_through(sz: Sizes) -> Prepared:
    n = sz.n
    w = _randn(n, n)
    orig = w.clone()
    params = {"w": w}
    spec = _spec("w", (n, n), (1, 1), (1, 4))
    cf, code = _compile(lambda p: skf.hard_threshold(p, spec, nnz=2), params)

    def op() -> None:
        skf.write_through_(params, cf(params))

    return Prepared(op, [w], 2 * 4 * n * n, reset=lambda: w.copy_(orig), code=code)


# -- peers: sparsekit 0.1.5 -------------------------------------------------


def _sk() -> Any:
    sk = importlib.import_module("sparsekit")
    importlib.import_module("sparsekit.kernels")._SINGLE_LOAD_LIMIT = 0  # CPU: never dispatch to Triton
    return sk


def _sk_select(wl: str, masks_only: bool) -> Callable[[Sizes], Prepared]:
    def make(sz: Sizes) -> Prepared:
        sk = _sk()
        n = sz.n
        block, scope, nnz = _layouts(n)[wl]
        nnz = int(nnz)
        w = _randn(n, n)
        orig = w.clone()
        sscope = tuple(scope) + (-1,) * (2 - len(scope))
        s = sk.ScopeSpec(sk.BlockSpec(sk.View(w, (n, n), (n, 1)), block), sscope)
        if masks_only:
            return Prepared(lambda: s.get_masks(nnz=nnz), [w], 4 * n * n + n * n)
        return Prepared(lambda: s.hard_threshold(nnz=nnz), [w], 4 * n * n, reset=lambda: w.copy_(orig))

    return make


def _sk_prox(preconditioned: bool) -> Callable[[Sizes], Prepared]:
    def make(sz: Sizes) -> Prepared:
        sk = _sk()
        n = sz.n
        w, h, t = _prox_inputs(n)
        orig = w.clone()
        b = sk.BlockSpec(sk.View(w, (n, n), (n, 1)), (1, 64))
        thr = torch.full(tuple(b.grid_shape), float(t))
        cond = h if preconditioned else None
        return Prepared(lambda: b.soft_threshold(thr, conditioners=cond), [w], 4 * n * n, reset=lambda: w.copy_(orig))

    return make


# -- peers: torch.ao.pruning.WeightNormSparsifier ---------------------------


class _Mats(nn.Module):
    """A module holding bias-free Linear layers with given (out, in) weight shapes."""

    def __init__(self, shapes: Dict[str, Tuple[int, int]], seed: int = 0):
        super().__init__()
        self.names = list(shapes)
        self.mods = nn.ModuleDict()
        for i, (name, (o, k)) in enumerate(shapes.items()):
            lin = nn.Linear(k, o, bias=False)
            with torch.no_grad():
                lin.weight.copy_(_randn(o, k, seed=seed + i))
            self.mods[name.replace(".", "_")] = lin


def _wns(shapes_of: Callable[[Sizes], Dict[str, Tuple[int, int]]], block: Tuple[int, int], zeros: int,
         level: float) -> Callable[[Sizes], Prepared]:
    def make(sz: Sizes) -> Prepared:
        from torch.ao.pruning import WeightNormSparsifier

        shapes = shapes_of(sz)
        model = _Mats(shapes)
        sp = WeightNormSparsifier(sparsity_level=level, sparse_block_shape=block, zeros_per_block=zeros)
        sp.prepare(model, [{"tensor_fqn": f"mods.{k}.weight"} for k in model.mods])
        weights = [m.parametrizations.weight.original for m in model.mods.values()]
        numel = sum(w.numel() for w in weights)
        return Prepared(sp.step, weights, 4 * numel + 4 * numel)  # masks are float32

    return make


# -- peers: torch.nn.utils.prune ---------------------------------------------


def _prune(method: str, shapes_of: Callable[[Sizes], Dict[str, Tuple[int, int]]]) -> Callable[[Sizes], Prepared]:
    def make(sz: Sizes) -> Prepared:
        import torch.nn.utils.prune as prune

        model = _Mats(shapes_of(sz))
        mods = list(model.mods.items())
        origs = {k: m.weight.detach().clone() for k, m in mods}

        def reset() -> None:
            for k, m in mods:
                if prune.is_pruned(m):
                    prune.remove(m, "weight")
                with torch.no_grad():
                    m.weight.copy_(origs[k])

        def op() -> None:
            if method == "global_unstructured":
                prune.global_unstructured([(m, "weight") for _, m in mods], prune.L1Unstructured, amount=0.5)
            elif method == "l1_unstructured":
                for _, m in mods:
                    prune.l1_unstructured(m, "weight", amount=0.5)
            else:  # ln_structured on fc1 rows and fc2 columns, each ranked on its own
                for k, m in mods:
                    prune.ln_structured(m, "weight", amount=0.5, n=2, dim=0 if "fc1" in k else 1)

        weights = [m.weight for _, m in mods]
        numel = sum(w.numel() for w in weights)
        return Prepared(op, weights, 4 * numel + 2 * 4 * numel, reset=reset)  # weight_orig copy + mask

    return make


# -- W4 / W5: proximal maps ----------------------------------------------------


def _prox_inputs(n: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Weights, an Adam-like conditioner sqrt(v) + eps, and a threshold zeroing about half the blocks."""
    w = _randn(n, n)
    v = _randn(n, n, seed=1).square() * 1e-6
    h = v.sqrt() + 1e-8
    t = w.reshape(n, n // 64, 64).norm(dim=-1).median()
    return w, h, t


def _fx_prox(preconditioned: bool) -> Callable[[Sizes], Prepared]:
    def make(sz: Sizes) -> Prepared:
        n = sz.n
        w, h, t = _prox_inputs(n)
        if preconditioned:
            t = (w * h).reshape(n, n // 64, 64).norm(dim=-1).median()
        block = skf.BlockSpec(skf.View("w", (n, n)), (1, 64))
        params, cond = {"w": w}, ({"w": h} if preconditioned else None)

        def fn(p: Dict[str, Tensor], thr: Tensor) -> Dict[str, Tensor]:
            return skf.soft_threshold(p, block, thr, conditioners=cond)

        cf, code = _compile(fn, params, t)
        return Prepared(lambda: cf(params, t), [w], 4 * n * n * (3 if preconditioned else 2), code=code)

    return make


# -- W6: the transformer tree ----------------------------------------------------


def w6_shapes(sz: Sizes) -> Dict[str, Tuple[int, int]]:
    """Pure: names and (out, in) shapes of the W6 tree: per layer q, k, v, o, fc1, fc2."""
    d, f = sz.d_model, sz.d_ff
    out: Dict[str, Tuple[int, int]] = {}
    for i in range(sz.layers):
        for m in "qkvo":
            out[f"layers.{i}.attn.{m}.weight"] = (d, d)
        out[f"layers.{i}.mlp.fc1.weight"] = (f, d)
        out[f"layers.{i}.mlp.fc2.weight"] = (d, f)
    return out


def w6_tree(sz: Sizes) -> Tuple[List[skf.ScopeSpec], List[skf.ScopeSpec]]:
    """Pure: the W6 specs: one coupled channel scope per layer, and 2:4 on every matrix."""
    shapes = w6_shapes(sz)
    d, f = sz.d_model, sz.d_ff
    channels = []
    for i in range(sz.layers):
        fc1 = skf.BlockSpec(skf.View(f"layers.{i}.mlp.fc1.weight", (f, d)), (1, -1))
        fc2 = skf.BlockSpec(skf.View(f"layers.{i}.mlp.fc2.weight", (d, f)), (-1, 1))
        channels.append(skf.ScopeSpec(skf.BlockCoupling((fc1, fc2), orders=((0, 1), (1, 0))), ()))
    two_four = [_spec(name, shape, (1, 1), (1, 4)) for name, shape in shapes.items()]
    return channels, two_four


def w6_step(channels: List[Any], two_four: List[Any]) -> Tuple[Callable[..., Dict[str, Tensor]], Any]:
    """Pure: the W6 step, uncompiled, and its ``nnz`` tree for channel budget ``d_ff // 2``.

    One call over the whole spec tree: the coupled channels run first (they
    share parameters with the 2:4 specs, so they form an earlier level), and
    the engine batches same-layout specs of each level.
    """
    tree = tuple(channels) + tuple(two_four)
    f = channels[0].block.specs[0].view.shape[0] if channels else 0

    def step(params: Dict[str, Tensor], nnz: Any) -> Dict[str, Tensor]:
        return skf.hard_threshold(params, tree, nnz=nnz)

    nnz = tuple([torch.tensor(f // 2)] * len(channels) + [torch.tensor(2)] * len(two_four))
    return step, nnz


def _w6_params(sz: Sizes) -> Dict[str, Tensor]:
    return {name: _randn(*shape, seed=i) for i, (name, shape) in enumerate(w6_shapes(sz).items())}


def _fx_w6(write_through: bool) -> Callable[[Sizes], Prepared]:
    def make(sz: Sizes) -> Prepared:
        params = _w6_params(sz)
        step, nnz = w6_step(*w6_tree(sz))
        cf, code = _compile(step, params, nnz)
        ts = list(params.values())
        nb = sum(t.numel() * 4 for t in ts)
        if not write_through:
            return Prepared(lambda: cf(params, nnz), ts, 2 * nb, code=code)
        origs = [t.clone() for t in ts]

        def reset() -> None:
            torch._foreach_copy_(ts, origs)

        return Prepared(lambda: skf.write_through_(params, cf(params, nnz)), ts, 2 * nb, reset=reset, code=code)

    return make


def _fx_w6_inplace(sz: Sizes) -> Prepared:
    """The fused alternative to pure step + write_through_: ``compile_step(..., inplace=True)``."""
    params = _w6_params(sz)
    channels, two_four = w6_tree(sz)
    _, nnz = w6_step(channels, two_four)
    step_ = skf.compile_step(skf.hard_threshold, tuple(channels) + tuple(two_four), inplace=True,
                             backend=BACKEND["name"])
    ts = list(params.values())
    origs = [t.clone() for t in ts]
    step_(params, nnz=nnz)  # compile outside the timed region

    def reset() -> None:
        torch._foreach_copy_(ts, origs)

    nb = sum(t.numel() * 4 for t in ts)
    return Prepared(lambda: step_(params, nnz=nnz), ts, nb, reset=reset)


def _sk_w6(sz: Sizes) -> Prepared:
    sk = _sk()
    params = _w6_params(sz)
    ts = list(params.values())
    origs = [t.clone() for t in ts]
    d, f = sz.d_model, sz.d_ff
    chans, twos = [], []
    for i in range(sz.layers):
        w1, w2 = params[f"layers.{i}.mlp.fc1.weight"], params[f"layers.{i}.mlp.fc2.weight"]
        c = sk.BlockCoupling(
            [sk.BlockSpec(sk.View(w1, (f, d), (d, 1)), (1, -1)), sk.BlockSpec(sk.View(w2, (d, f), (f, 1)), (-1, 1))],
            [(0, 1), (1, 0)],
        )
        chans.append(sk.ScopeSpec(c, (-1, -1)))
    for w in ts:
        m, k = w.shape
        twos.append(sk.ScopeSpec(sk.BlockSpec(sk.View(w, (m, k), (k, 1)), (1, 1)), (1, 4)))

    def op() -> None:
        for s in chans:
            s.hard_threshold(nnz=f // 2)
        for s in twos:
            s.hard_threshold(nnz=2)

    nb = sum(t.numel() * 4 for t in ts)
    return Prepared(op, ts, nb, reset=lambda: torch._foreach_copy_(ts, origs))


def _w6_fc(sz: Sizes) -> Dict[str, Tuple[int, int]]:
    return {k: v for k, v in w6_shapes(sz).items() if ".mlp." in k}


# ---------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------


def cases() -> List[Case]:
    """Pure: every row of the benchmark table, in display order."""
    big = lambda sz: sz.n  # noqa: E731
    small = lambda sz: sz.n_small  # noqa: E731
    one = lambda sz: {"w": (sz.n, sz.n)}  # noqa: E731
    out: List[Case] = []
    for label, n_of in (("W1 2:4 {n_small}²", small), ("W1 2:4 {n}²", big)):
        out += [
            Case(label, "sparsekit_fx", "hard_threshold", "oop", _fx_select("W1", n_of, False), target=2.0),
            Case(label, "sparsekit_fx", "masks", "oop", _fx_select("W1", n_of, True), target=2.0,
                 note="masks-only variant; target taken as W1's"),
        ]
    out += [
        Case("W1 2:4 {n}²", "sparsekit_fx", "hard_threshold + write_through_", "inplace", _fx_write_through),
        Case("W1 2:4 {n}²", "sparsekit 0.1.5", "hard_threshold (eager, in place)", "inplace", _sk_select("W1", False),
             requires=("sparsekit",), slow=True),
        Case("W1 2:4 {n}²", "sparsekit 0.1.5", "get_masks (eager)", "oop", _sk_select("W1", True),
             requires=("sparsekit",), slow=True),
        Case("W1 2:4 {n}²", "WeightNormSparsifier", "step() (masks, in place)", "inplace", _wns(one, (1, 4), 2, 1.0),
             slow=True),
        Case("W2 4x4 half/row {n}²", "sparsekit_fx", "hard_threshold", "oop", _fx_select("W2", big, False), target=2.0),
        Case("W2 4x4 half/row {n}²", "sparsekit_fx", "masks", "oop", _fx_select("W2", big, True), target=2.0,
             note="masks-only variant; target taken as W2's"),
        Case("W2 4x4 half/row {n}²", "sparsekit 0.1.5", "hard_threshold (eager, in place)", "inplace",
             _sk_select("W2", False), requires=("sparsekit",), slow=True),
        Case("W2 4x4 half/row {n}²", "WeightNormSparsifier", "step() (masks, in place)", "inplace",
             _wns(one, (4, 4), 16, 0.5), slow=True, note="WNS ranks 4x4 blocks over the whole matrix, not per row"),
        Case("W3 global 50% {n}²", "sparsekit_fx", "hard_threshold", "oop", _fx_select("W3", big, False), target=6.0),
        Case("W3 global 50% {n}²", "sparsekit_fx", "masks", "oop", _fx_select("W3", big, True), target=6.0,
             note="masks-only variant; target taken as W3's"),
        Case("W3 global 50% {n}²", "sparsekit 0.1.5", "hard_threshold (eager, in place)", "inplace",
             _sk_select("W3", False), requires=("sparsekit",), slow=True),
        Case("W3 global 50% {n}²", "prune", "l1_unstructured", "oop", _prune("l1_unstructured", one), slow=True),
        Case("W3 global 50% {n}²", "prune", "global_unstructured", "oop", _prune("global_unstructured", one), slow=True),
        Case("W4 prox (1,64) {n}²", "sparsekit_fx", "soft_threshold", "oop", _fx_prox(False), target=1.5,
             requires=("soft_threshold",)),
        Case("W4 prox (1,64) {n}²", "sparsekit 0.1.5", "soft_threshold (eager, in place)", "inplace", _sk_prox(False),
             requires=("sparsekit",), slow=True),
        Case("W5 Adam prox (1,64) {n}²", "sparsekit_fx", "soft_threshold", "oop", _fx_prox(True), target=4.0,
             requires=("soft_threshold",)),
        Case("W5 Adam prox (1,64) {n}²", "sparsekit 0.1.5", "soft_threshold (eager, in place)", "inplace",
             _sk_prox(True), requires=("sparsekit",), slow=True),
        Case("W6 transformer {layers}L", "sparsekit_fx", "compiled step", "inplace", _fx_w6(False), target=2.0,
             note="target: the pure step against one _foreach_mul_ pass over the same weights"),
        Case("W6 transformer {layers}L", "sparsekit_fx", "compiled step + write_through_", "inplace", _fx_w6(True)),
        Case("W6 transformer {layers}L", "sparsekit_fx", "compile_step(inplace=True)", "inplace", _fx_w6_inplace,
             note="the optional fused in-place step"),
        Case("W6 transformer {layers}L", "sparsekit 0.1.5", "hard_threshold (eager, in place)", "inplace", _sk_w6,
             requires=("sparsekit",), slow=True),
        Case("W6 transformer {layers}L", "WeightNormSparsifier", "step() (masks, in place)", "inplace",
             _wns(w6_shapes, (1, 4), 2, 1.0), slow=True, note="2:4 only: WNS cannot couple channels"),
        Case("W6 transformer {layers}L", "prune", "ln_structured fc1 rows, fc2 cols", "oop", _prune("ln_structured", _w6_fc),
             slow=True, note="channels only, fc1 and fc2 ranked separately"),
    ]
    return out


def available(req: str) -> bool:
    """Pure: whether an optional requirement of a case is present."""
    if req == "soft_threshold":
        return hasattr(skf, "soft_threshold")
    if req == "sparsekit":
        try:
            _sk()
            return True
        except Exception:  # ImportError, or triton missing
            return False
    raise ValueError(req)
