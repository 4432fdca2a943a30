"""The bad-input catalogue: one table, one test per entry, and the docs kept in step.

Every entry raises a :class:`sparsekit_fx.SparseKitError` subclass whose
message names the argument, what was expected, what was got and how to fix it
(``errors.describe``), and leaves its inputs unchanged. ``docs/errors.md``
lists every entry (``python docs/make_errors.py`` regenerates it from this
table, with the real messages); a test checks the two agree. Also here: no
``assert`` statements in the package, and integer/bool params refused by every
public op that takes params.
"""

from __future__ import annotations

import ast
import inspect
import math
import pathlib
import re
from dataclasses import dataclass
from typing import Callable, Tuple, Type

import pytest
import torch
from torch import nn

import sparsekit_fx as skf
from sparsekit_fx import BlockCoupling, BlockSpec, ScopeCoupling, ScopeSpec, View

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "errors.md"


@dataclass(frozen=True)
class Entry:
    id: str
    exc: Type[skf.SparseKitError]
    arg: str  # the argument the message must name
    trigger: Callable[[], object]
    what: str  # the bad input, in words (for docs/errors.md)


# shared inputs (module level: the catalogue test checks they are left unchanged)
V = View("w", (8, 12))
B = BlockSpec(V, (1, 4))
U = BlockSpec(View("u", (8, 12)), (1, 4))
W = {"w": torch.randn(4, 8)}
S = ScopeSpec(BlockSpec(View("w", (4, 8)), (1, 1)), (1, 4))
CH = ScopeSpec(BlockCoupling((BlockSpec(View("a", (4, 8)), (1, -1)), BlockSpec(View("b", (8, 4)), (-1, 1))),
                             orders=((0, 1), (1, 0))), ())
AB = {"a": torch.randn(4, 8), "b": torch.randn(8, 4)}
META = {"a": AB["a"], "b": torch.empty(8, 4, device="meta")}


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)


MODEL = _Tiny()


def _nan_params():
    w = W["w"].clone()
    w[1, 2] = math.nan
    return {"w": w}


NAN = _nan_params()


def E(id, exc, arg, trigger, what):  # noqa: N802 - a table row
    return Entry(id, exc, arg, trigger, what)


CATALOGUE: Tuple[Entry, ...] = (
    # ---- views ----------------------------------------------------------------
    E("view.param", skf.SpecError, "param", lambda: View("", (4,)), "an empty parameter name"),
    E("view.param_shape", skf.SpecError, "param_shape", lambda: View("w", (0, 4)), "a parameter size < 1"),
    E("view.shape-type", skf.SpecError, "shape", lambda: View("w", (4, 4), ("a", 2)), "a shape that is not ints"),
    E("view.stride-rank", skf.SpecError, "stride", lambda: View("w", (4, 4), (2, 2), (4,)),
      "one stride too few for the view's dims"),
    E("view.offset", skf.SpecError, "offset", lambda: View("w", (4, 4), (2, 2), (4, 1), -1), "a negative offset"),
    E("view.outside", skf.SpecError, "shape/stride/offset", lambda: View("w", (4, 4), (4, 4), (4, 1), 1),
      "a view whose last element lies outside its parameter"),
    E("view.self-overlap", skf.SpecError, "stride", lambda: View("w", (4, 4), (2, 4), (1, 1)),
      "a view that overlaps itself (strides that do not nest)"),
    E("view.zero-stride", skf.SpecError, "stride", lambda: View("w", (4, 4), (2, 2), (0, 1)),
      "a zero stride on a dim of size > 1 (a broadcast view)"),
    # ---- blocks ---------------------------------------------------------------
    E("block.view", skf.SpecError, "view", lambda: BlockSpec("w", (1, 1)), "a BlockSpec of something not a View"),
    E("block.rank", skf.ShapeMismatchError, "shape", lambda: BlockSpec(V, (1, 4, 1)),
      "a block shape of the wrong rank"),
    E("block.divide", skf.ShapeMismatchError, "shape", lambda: BlockSpec(V, (3, 4)),
      "a block size not dividing the view"),
    E("block.size", skf.SpecError, "shape", lambda: BlockSpec(V, (0, 4)), "a block size of 0 or below -1"),
    # ---- scopes ---------------------------------------------------------------
    E("scope.block", skf.SpecError, "block", lambda: ScopeSpec(V, (1,)), "a ScopeSpec of something not a block spec"),
    E("scope.rank", skf.ShapeMismatchError, "shape", lambda: ScopeSpec(B, (1, 1, 1)),
      "a scope shape with more dims than the block grid"),
    E("scope.divide", skf.ShapeMismatchError, "shape", lambda: ScopeSpec(B, (3, 1)),
      "a scope size not dividing the block grid"),
    # ---- couplings ------------------------------------------------------------
    E("bcoupling.empty", skf.CouplingError, "specs", lambda: BlockCoupling(()), "a BlockCoupling of nothing"),
    E("bcoupling.member", skf.CouplingError, "specs[1]", lambda: BlockCoupling((B, "x")),
      "a BlockCoupling member that is not a BlockSpec"),
    E("bcoupling.orders-count", skf.CouplingError, "orders", lambda: BlockCoupling((B, U), orders=((0, 1),)),
      "fewer orders than coupled specs"),
    E("bcoupling.order-permutation", skf.CouplingError, "orders[1]",
      lambda: BlockCoupling((B, U), orders=((0, 1), (0, 0))), "an order that is not a permutation"),
    E("bcoupling.order-type", skf.CouplingError, "orders[1]", lambda: BlockCoupling((B, U), orders=((0, 1), "ab")),
      "an order that is not ints"),
    E("bcoupling.grids", skf.CouplingError, "orders[1]", lambda: BlockCoupling((B, U), orders=((0, 1), (1, 0))),
      "coupled grids that disagree after their orders"),
    E("bcoupling.overlap", skf.CouplingError, "views", lambda: BlockCoupling((B, B)),
      "two coupled views of one parameter sharing elements"),
    E("bcoupling.param_shape", skf.ShapeMismatchError, "param_shape",
      lambda: BlockCoupling((B, BlockSpec(View("w", (4, 24)), (1, 8)))),
      "two views of one parameter with different param_shape"),
    E("scoupling.empty", skf.CouplingError, "scopes", lambda: ScopeCoupling(()), "a ScopeCoupling of nothing"),
    E("scoupling.member", skf.CouplingError, "scopes[1]", lambda: ScopeCoupling((ScopeSpec(B, (1, 3)), B)),
      "a ScopeCoupling member that is not a ScopeSpec"),
    E("scoupling.grids", skf.CouplingError, "orders[1]",
      lambda: ScopeCoupling((ScopeSpec(B, (1, 3)), ScopeSpec(U, (2, 3)))),
      "coupled scope grids that disagree after their orders"),
    E("scoupling.overlap", skf.CouplingError, "views",
      lambda: ScopeCoupling((ScopeSpec(BlockCoupling((B, U)), (1, 3)), ScopeSpec(B, (1, 3)))),
      "views of one parameter overlapping anywhere inside one spec (nested couplings included)"),
    # ---- spec arguments and trees ----------------------------------------------
    E("spec.type", skf.SpecError, "spec", lambda: skf.hard_threshold(W, "w", nnz=1), "an op given a non-spec"),
    E("spec.empty-tree", skf.SpecError, "spec", lambda: skf.masks(W, (), nnz=1), "an empty spec tree"),
    E("spec.scope-expected", skf.SpecError, "scope", lambda: skf.scope_scores(W, S.block),
      "scope_scores given a block spec"),
    E("spec.block-expected", skf.SpecError, "spec", lambda: skf.block_norms(W, ScopeCoupling((S,))),
      "a block statistic given a ScopeCoupling"),
    # ---- hyper-parameters ------------------------------------------------------
    E("mode.none", skf.ArgumentError, "nnz/sparsity/thresholds", lambda: skf.hard_threshold(W, S),
      "none of nnz/sparsity/thresholds"),
    E("mode.several", skf.ArgumentError, "nnz/sparsity/thresholds",
      lambda: skf.hard_threshold(W, S, nnz=1, thresholds=0.1), "more than one of nnz/sparsity/thresholds"),
    E("nnz.range", skf.ArgumentError, "nnz", lambda: skf.hard_threshold(W, S, nnz=5),
      "an int nnz outside [0, numblk_per_scope]"),
    E("nnz.type", skf.ArgumentError, "nnz", lambda: skf.hard_threshold(W, S, nnz=1.5), "a float nnz"),
    E("nnz.float-tensor", skf.ArgumentError, "nnz", lambda: skf.block_masks(W, S, nnz=torch.tensor(1.0)),
      "a float tensor nnz"),
    E("nnz.shape", skf.ShapeMismatchError, "nnz", lambda: skf.hard_threshold(W, S, nnz=torch.ones(3, dtype=torch.long)),
      "an nnz tensor that is neither 0-d nor scope-grid shaped"),
    E("sparsity.range", skf.ArgumentError, "sparsity", lambda: skf.hard_threshold(W, S, sparsity=1.5),
      "a sparsity outside [0, 1]"),
    E("sparsity.int-tensor", skf.ArgumentError, "sparsity", lambda: skf.masks(W, S, sparsity=torch.tensor(1)),
      "an integer tensor sparsity"),
    E("thresholds.shape", skf.ShapeMismatchError, "thresholds",
      lambda: skf.hard_threshold(W, S, thresholds=torch.ones(3)), "thresholds of the wrong shape"),
    E("thresholds.type", skf.ArgumentError, "thresholds", lambda: skf.hard_threshold(W, S, thresholds="x"),
      "thresholds that are not a number or tensor"),
    E("thresholds.int-tensor", skf.ArgumentError, "thresholds",
      lambda: skf.block_masks(W, S, thresholds=torch.tensor(1)), "an integer tensor of thresholds"),
    E("scores.with-values", skf.ArgumentError, "values/scores",
      lambda: skf.hard_threshold(W, S, nnz=1, values=W, scores=torch.ones(4, 2, 4)), "both values= and scores="),
    E("scores.shape", skf.ShapeMismatchError, "scores", lambda: skf.hard_threshold(W, S, nnz=1, scores=torch.ones(4, 4)),
      "scores not in the scope layout"),
    E("scores.dtype", skf.ArgumentError, "scores",
      lambda: skf.block_masks(W, S, nnz=1, scores=torch.ones(4, 2, 4, dtype=torch.long)), "integer scores"),
    E("scores.device", skf.ParamError, "scores",
      lambda: skf.block_masks(W, S, nnz=1, scores=torch.ones(4, 2, 4, device="meta")),
      "scores on another device than params"),
    E("p.value", skf.ArgumentError, "p", lambda: skf.block_norms(W, S, p=-1), "a norm order p < 0 (other than -inf)"),
    E("hyper.tree", skf.ArgumentError, "nnz", lambda: skf.hard_threshold(W, (S, S), nnz=(1, 2, 3)),
      "per-spec hyper-parameters not shaped like the spec tree"),
    E("k.range", skf.ArgumentError, "k", lambda: skf.topk_mask(W["w"], 9), "k outside [0, n] for topk_mask"),
    E("k.kth-range", skf.ArgumentError, "k", lambda: skf.kth_largest(W["w"], 0), "k outside [1, n] for kth_largest"),
    E("x.dtype", skf.ArgumentError, "x", lambda: skf.kth_largest(torch.ones(3, dtype=torch.long), 1),
      "an integer tensor to select from"),
    E("dim.range", skf.ArgumentError, "dim", lambda: skf.topk_mask(W["w"], 1, dim=2), "a dim the tensor does not have"),
    E("k_weight.value", skf.ArgumentError, "k_weight", lambda: skf.kth_mid(W["w"], 1, k_weight=-1.0),
      "a negative k_weight"),
    E("fn.shape", skf.ArgumentError, "fn", lambda: skf.block_reduce(W, S.block, lambda b: b),
      "a block_reduce function that does not reduce the last dim"),
    # ---- params, values ---------------------------------------------------------
    E("params.type", skf.ParamError, "params", lambda: skf.block_norms([W["w"]], S.block),
      "params that are not a mapping"),
    E("params.missing", skf.ParamError, "params", lambda: skf.hard_threshold({}, S, nnz=1),
      "params without a name the spec uses"),
    E("params.not-tensor", skf.ParamError, "params['w']", lambda: skf.masks({"w": [1.0]}, S, nnz=1),
      "a params entry that is not a tensor"),
    E("params.shape", skf.ShapeMismatchError, "params['w']", lambda: skf.hard_threshold({"w": torch.ones(8, 4)}, S, nnz=1),
      "a parameter whose shape disagrees with the spec's param_shape"),
    E("params.integer", skf.ParamError, "params['w']",
      lambda: skf.hard_threshold({"w": torch.ones(4, 8, dtype=torch.int32)}, S, nnz=1), "an integer parameter"),
    E("params.bool", skf.ParamError, "params['w']",
      lambda: skf.masks({"w": torch.ones(4, 8, dtype=torch.bool)}, S, nnz=1), "a bool parameter"),
    E("params.device", skf.ParamError, "params", lambda: skf.hard_threshold(META, CH, nnz=1),
      "coupled parameters on different devices"),
    E("values.missing", skf.ParamError, "values", lambda: skf.block_masks(W, S, nnz=1, values={}),
      "values without a name the spec uses"),
    E("values.shape", skf.ShapeMismatchError, "values['w']",
      lambda: skf.masks(W, S, nnz=1, values={"w": torch.ones(2)}), "a values entry of the wrong shape"),
    E("values.integer", skf.ParamError, "values['w']",
      lambda: skf.block_norms(W, S, values={"w": torch.ones(4, 8, dtype=torch.long)}), "an integer values entry"),
    E("values.device", skf.ParamError, "values['w']",
      lambda: skf.hard_threshold(W, S, nnz=1, values={"w": torch.ones(4, 8, device="meta")}),
      "values on another device than their parameter"),
    E("masks.type", skf.ParamError, "masks", lambda: skf.apply_masks(W, [1]), "apply_masks given masks that are not a mapping"),
    E("masks.shape", skf.ShapeMismatchError, "masks['w']",
      lambda: skf.apply_masks(W, {"w": torch.ones(2, dtype=torch.bool)}), "a mask of the wrong shape"),
    E("masks.unknown", skf.ParamError, "params", lambda: skf.apply_masks(W, {"v": torch.ones(2, dtype=torch.bool)}),
      "a mask for a name params does not have"),
    E("grads.missing", skf.ParamError, "grads", lambda: skf.masked_update(W, {}, {}, lambda p, g: p - g),
      "masked_update given grads without a parameter's name"),
    E("grads.shape", skf.ShapeMismatchError, "grads['w']",
      lambda: skf.masked_update(W, {"w": torch.ones(8)}, {}, lambda p, g: p - g),
      "a gradient of another shape (it would broadcast)"),
    # ---- the prox and Adam + prox --------------------------------------------------
    E("prox.thresholds-negative", skf.ArgumentError, "thresholds", lambda: skf.soft_threshold(W, S, -0.1),
      "a negative (or NaN) Python threshold for soft_threshold"),
    E("prox.thresholds-shape", skf.ShapeMismatchError, "thresholds",
      lambda: skf.soft_threshold(W, S.block, torch.ones(3)), "soft_threshold thresholds of the wrong grid shape"),
    E("prox.passes", skf.ArgumentError, "passes", lambda: skf.soft_threshold(W, S, 0.1, passes=0),
      "solver passes < 1"),
    E("prox.scale", skf.ArgumentError, "scale", lambda: skf.soft_threshold(W, S, 0.1, scale=1), "a non-bool scale"),
    E("conditioners.type", skf.ParamError, "conditioners", lambda: skf.soft_threshold(W, S, 0.1, conditioners=[1]),
      "conditioners that are not a mapping"),
    E("conditioners.missing", skf.ParamError, "conditioners", lambda: skf.soft_threshold(W, S, 0.1, conditioners={}),
      "conditioners without a name the spec uses"),
    E("conditioners.shape", skf.ShapeMismatchError, "conditioners['w']",
      lambda: skf.soft_threshold(W, S, 0.1, conditioners={"w": torch.ones(8, 4)}), "a conditioner of the wrong shape"),
    E("conditioners.integer", skf.ParamError, "conditioners['w']",
      lambda: skf.soft_threshold(W, S, 0.1, conditioners={"w": torch.ones(4, 8, dtype=torch.long)}),
      "an integer conditioner"),
    E("conditioners.device", skf.ParamError, "conditioners['w']",
      lambda: skf.soft_threshold(W, S, 0.1, conditioners={"w": torch.ones(4, 8, device="meta")}),
      "a conditioner on another device than its parameter"),
    E("adam.state", skf.ArgumentError, "state", lambda: skf.prox_adam_step(W, W, {}, S),
      "prox_adam_step without a ProxAdamState"),
    E("adam.grads-missing", skf.ParamError, "grads", lambda: skf.prox_adam_step(W, {}, skf.prox_adam_init(W), S),
      "prox_adam_step grads without a parameter's name"),
    E("adam.grads-shape", skf.ShapeMismatchError, "grads['w']",
      lambda: skf.prox_adam_step(W, {"w": torch.ones(8, 4)}, skf.prox_adam_init(W), S), "a gradient of another shape"),
    E("adam.params-integer", skf.ParamError, "params['w']",
      lambda: skf.prox_adam_step({"w": torch.ones(4, 8, dtype=torch.long)}, W, skf.prox_adam_init(W), S),
      "prox_adam_step on integer params"),
    E("adam.lam", skf.ArgumentError, "lam", lambda: skf.prox_adam_step(W, W, skf.prox_adam_init(W), S, lam=-1.0),
      "a negative lam"),
    E("adam.betas", skf.ArgumentError, "betas", lambda: skf.prox_adam_step(W, W, skf.prox_adam_init(W), S, betas=0.9),
      "betas that are not a pair"),
    # ---- write-through ----------------------------------------------------------
    E("write.target", skf.ParamError, "target", lambda: skf.write_through_([W["w"]], {}),
      "a target that is neither an nn.Module nor a mutable mapping"),
    E("write.new_params", skf.ParamError, "new_params", lambda: skf.write_through_(MODEL, [W["w"]]),
      "new_params that are not a mapping"),
    E("write.name", skf.ParamError, "new_params['nope']", lambda: skf.write_through_(MODEL, {"nope": torch.zeros(1)}),
      "an entry the target does not have"),
    E("write.not-tensor", skf.ParamError, "new_params['fc.bias']", lambda: skf.write_through_(MODEL, {"fc.bias": [0.0]}),
      "an entry that is not a tensor"),
    E("write.shape", skf.ShapeMismatchError, "new_params['fc.weight']",
      lambda: skf.write_through_(MODEL, {"fc.weight": torch.zeros(8, 4)}), "an entry of the wrong shape"),
    E("write.dtype", skf.ParamError, "new_params['fc.weight']",
      lambda: skf.write_through_(MODEL, {"fc.weight": torch.zeros(4, 8, dtype=torch.float64)}),
      "an entry of the wrong dtype"),
    E("write.device", skf.ParamError, "new_params['fc.weight']",
      lambda: skf.write_through_(MODEL, {"fc.weight": torch.zeros(4, 8, device="meta")}),
      "an entry on the wrong device"),
    # ---- the explicit value check ------------------------------------------------
    E("finite.params", skf.NonFiniteError, "params['w']", lambda: skf.check_finite(NAN, S),
      "check_finite on params with a NaN or Inf inside the spec's views"),
    E("finite.values", skf.NonFiniteError, "values['w']", lambda: skf.check_finite(W, S, values=NAN),
      "check_finite on values with a NaN or Inf"),
)

IDS = [e.id for e in CATALOGUE]

_SHARED = {"W": W, "AB": AB, "NAN": NAN}


def raised(entry: Entry) -> skf.SparseKitError:
    """Run an entry's trigger; return the error it raised."""
    with pytest.raises(entry.exc) as info:
        entry.trigger()
    return info.value


def test_catalogue_ids_are_unique():
    assert len(IDS) == len(set(IDS))


@pytest.mark.parametrize("entry", CATALOGUE, ids=IDS)
def test_catalogue_entry(entry):
    before = {k: {n: t.clone() for n, t in d.items()} for k, d in _SHARED.items()}
    model_before = {k: v.detach().clone() for k, v in MODEL.state_dict().items()}
    err = raised(entry)
    assert isinstance(err, skf.SparseKitError)
    msg = str(err)
    # names the argument, says what was expected and what was got, and the fix
    assert f"argument '{entry.arg}' expected " in msg, msg
    assert ", got " in msg and ". Fix: " in msg and not msg.rstrip().endswith("Fix:"), msg
    # nothing was modified
    for k, d in _SHARED.items():
        for n, t in d.items():
            assert torch.equal(t, before[k][n]) or (t.isnan() == before[k][n].isnan()).all(), (k, n)
    for k, v in MODEL.state_dict().items():
        assert torch.equal(v, model_before[k]), k


def _doc_rows():
    rows = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"^\|\s*`([a-z_.\-]+)`\s*\|\s*`(\w+)`\s*\|", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def test_docs_list_every_catalogue_entry_and_nothing_else():
    rows = _doc_rows()
    assert set(rows) == set(IDS), f"missing in docs: {set(IDS) - set(rows)}; unknown: {set(rows) - set(IDS)}"
    for e in CATALOGUE:
        assert rows[e.id] == e.exc.__name__, e.id


# --------------------------------------------------------------------------
# no assert statements for validation
# --------------------------------------------------------------------------


def test_the_package_has_no_assert_statements():
    found = []
    for path in sorted((ROOT / "sparsekit_fx").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Assert):
                found.append(f"{path.name}:{node.lineno}")
    assert not found, f"use errors.describe(...) with a SparseKitError instead of assert: {found}"


# --------------------------------------------------------------------------
# integer and bool params are refused by every public op that takes params
# --------------------------------------------------------------------------

SW = ScopeSpec(BlockSpec(View("w", (4, 8)), (1, 2)), (1, -1))

# op name -> call(params); every public function whose first argument is ``params`` must be here
PARAM_OPS = {
    "block_norms": lambda p: skf.block_norms(p, SW),
    "block_min": lambda p: skf.block_min(p, SW),
    "block_max": lambda p: skf.block_max(p, SW),
    "block_reduce": lambda p: skf.block_reduce(p, SW, lambda b: b.sum(-1)),
    "scope_scores": lambda p: skf.scope_scores(p, SW),
    "block_masks": lambda p: skf.block_masks(p, SW, nnz=1),
    "masks": lambda p: skf.masks(p, SW, sparsity=0.5),
    "hard_threshold": lambda p: skf.hard_threshold(p, SW, thresholds=0.5),
    "apply_masks": lambda p: skf.apply_masks(p, {"w": torch.ones(4, 8, dtype=torch.bool)}),
    "masked_update": lambda p: skf.masked_update(p, p, {"w": torch.ones(4, 8, dtype=torch.bool)}, lambda a, g: a),
    "check_finite": lambda p: skf.check_finite(p, SW),
    "block_mean": lambda p: skf.block_mean(p, SW),
    "soft_threshold": lambda p: skf.soft_threshold(p, SW, 0.5),
    "prox_adam_init": lambda p: skf.prox_adam_init(p),
    "prox_adam_step": lambda p: skf.prox_adam_step(p, p, skf.prox_adam_init({"w": torch.ones(4, 8)}), SW),
    "weight_norm_masks": lambda p: skf.weight_norm_masks(p, "w"),
    "l1_unstructured": lambda p: skf.l1_unstructured(p, "w", 0.5),
    "random_unstructured": lambda p: skf.random_unstructured(p, "w", 0.5),
    "ln_structured": lambda p: skf.ln_structured(p, "w", 0.5, 2, 0),
    "global_unstructured": lambda p: skf.global_unstructured(p, ["w"], 0.5),
}
# tensor-first selection primitives
TENSOR_OPS = {
    "kth_largest": lambda x: skf.kth_largest(x, 1),
    "kth_mid": lambda x: skf.kth_mid(x, 1),
    "topk_mask": lambda x: skf.topk_mask(x, 1),
    "threshold_mask": lambda x: skf.threshold_mask(x, 0.5),
}
# public functions with a ``params`` first argument that legitimately accept any dtype
ANY_DTYPE = {"sparsity_table", "print_sparsity_table"}


def test_every_public_op_taking_params_is_checked_for_dtypes():
    takes_params = set()
    for name in skf.__all__:
        obj = getattr(skf, name)
        if inspect.isfunction(obj):
            first = next(iter(inspect.signature(obj).parameters), None)
            if first in ("params", "x", "scores"):
                takes_params.add(name)
    missing = takes_params - set(PARAM_OPS) - set(TENSOR_OPS) - ANY_DTYPE
    assert not missing, f"add these public ops to PARAM_OPS/TENSOR_OPS: {sorted(missing)}"


@pytest.mark.parametrize("dtype", [torch.int64, torch.int8, torch.uint8, torch.bool])
@pytest.mark.parametrize("op", sorted(PARAM_OPS), ids=sorted(PARAM_OPS))
def test_integer_and_bool_params_are_refused(op, dtype):
    p = {"w": torch.ones(4, 8, dtype=dtype)}
    with pytest.raises(skf.SparseKitError) as e:
        PARAM_OPS[op](p)
    assert "params['w']" in str(e.value) and str(dtype) in str(e.value) and "Fix:" in str(e.value)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
@pytest.mark.parametrize("op", sorted(TENSOR_OPS), ids=sorted(TENSOR_OPS))
def test_integer_and_bool_tensors_are_refused_by_selection(op, dtype):
    with pytest.raises(skf.ArgumentError) as e:
        TENSOR_OPS[op](torch.ones(4, 8, dtype=dtype))
    assert str(dtype) in str(e.value) and "Fix:" in str(e.value)
