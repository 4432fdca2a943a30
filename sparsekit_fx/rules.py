"""Spec trees from a model: name-pattern rules mapped onto ``named_parameters()``.

A *spec tree* is a plain tuple of scope specs (ScopeSpec / ScopeCoupling);
ops are applied to it one spec at a time. :func:`specs_from_module` builds one
from small frozen rule objects:

* :class:`BlockRule` — every parameter matching ``pattern`` gets its own
  ``ScopeSpec(BlockSpec(View.of(name, p), block), scope)``.
* :class:`CoupleRule` — one coupled spec *per layer* from several
  :class:`Part` patterns, e.g. the rows of ``*.fc1.weight`` with the columns
  of ``*.fc2.weight``.

Patterns use shell-style wildcards (:mod:`fnmatch`): ``*`` matches any run of
characters, dots included; ``?`` one character; ``[seq]`` one of ``seq``.
Matching is against the whole name and is case-sensitive. In a CoupleRule
the text captured by the wildcards is the *layer key*: ``layers.3.fc1.weight``
matched by ``*.fc1.weight`` has key ``("layers.3",)`` and is coupled with the
``*.fc2.weight`` parameter of the same key. Every part of a CoupleRule must
therefore use the same number of ``*``/``?`` wildcards.

:func:`channel_rule` and :func:`head_rule` build the two common couplings
(MLP hidden channels; attention heads of q/k/v and the output projection,
separate or fused as in ``nn.MultiheadAttention``).

A rule that matches nothing, a parameter claimed by two rules, or a shape a
rule does not fit raise :class:`~sparsekit_fx.errors.RuleError` naming the rule
and the parameter.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from torch import nn

from .errors import RuleError, SparseKitError, describe
from .specs import BlockCoupling, BlockSpec, ScopeSpec, View

__all__ = [
    "BlockRule",
    "Part",
    "CoupleRule",
    "Rule",
    "channel_rule",
    "head_rule",
    "specs_from_module",
]

Shape = Tuple[int, ...]


def _shape(value: Any, where: str, arg: str, allow_empty: bool = True) -> Shape:
    try:
        out = tuple(operator.index(v) for v in value)
    except TypeError:
        raise RuleError(describe(where, arg, "a tuple of ints", repr(value), f"pass {arg} as e.g. (1, 4).")) from None
    if not out and not allow_empty:
        raise RuleError(describe(where, arg, "a non-empty tuple of ints", out, f"give {arg} at least one dim."))
    return out


def _pattern(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise RuleError(describe(where, "pattern", "a non-empty name pattern (str)", repr(value),
                                 "pass a shell-style pattern such as '*.fc1.weight'."))
    return value


@dataclass(frozen=True)
class BlockRule:
    """One scope spec per parameter whose name matches ``pattern``.

    Args:
        pattern: Shell-style name pattern (see module doc).
        block: Block shape, as in :class:`~sparsekit_fx.BlockSpec`
            (``-1`` spans a dim, ``()`` means single elements).
        scope: Scope shape over the block grid, as in
            :class:`~sparsekit_fx.ScopeSpec` (``()`` is one scope per parameter).
        name: Label used in messages and as the specs' name prefix.

    Example:
        2:4 on every linear weight: ``BlockRule("*.weight", (1, 1), (1, 4))``.
    """

    pattern: str
    block: Shape = ()
    scope: Shape = ()
    name: Optional[str] = None

    def __post_init__(self) -> None:
        where = f"BlockRule({self.pattern!r})"
        object.__setattr__(self, "pattern", _pattern(self.pattern, where))
        object.__setattr__(self, "block", _shape(self.block, where, "block"))
        object.__setattr__(self, "scope", _shape(self.scope, where, "scope"))

    @property
    def label(self) -> str:
        """How the rule is named in messages."""
        return f"BlockRule({self.pattern!r}" + (f", name={self.name!r})" if self.name else ")")


@dataclass(frozen=True)
class Part:
    """One member of a :class:`CoupleRule`.

    Args:
        pattern: Shell-style name pattern; its wildcards capture the layer key.
        block: Block shape over the part's view.
        order: Permutation aligning this part's block grid with the coupled
            grid (``None`` = identity), as in :class:`~sparsekit_fx.BlockCoupling`.
        chunks: Cut the parameter along dim 0 into this many equal views, each
            a coupled member with the same block shape and order (3 for a
            fused q/k/v ``in_proj_weight``).
        view_shape: Reshape each view (one ``-1`` allowed), e.g. ``(-1, 1)``
            turns a bias into a column so it couples with 2-D weight grids.
        groups: Instead of ``block``: the number of equal blocks along each
            view dim, e.g. ``(num_heads, 1)``; block sizes are then computed
            from the matched parameter.
    """

    pattern: str
    block: Shape = ()
    order: Optional[Shape] = None
    chunks: int = 1
    view_shape: Optional[Shape] = None
    groups: Optional[Shape] = None

    def __post_init__(self) -> None:
        where = f"Part({self.pattern!r})"
        object.__setattr__(self, "pattern", _pattern(self.pattern, where))
        object.__setattr__(self, "block", _shape(self.block, where, "block"))
        if self.order is not None:
            object.__setattr__(self, "order", _shape(self.order, where, "order"))
        if self.view_shape is not None:
            vs = _shape(self.view_shape, where, "view_shape", allow_empty=False)
            if sum(v == -1 for v in vs) > 1 or any(v < 1 and v != -1 for v in vs):
                raise RuleError(describe(where, "view_shape", "sizes >= 1 with at most one -1", vs,
                                         "e.g. (-1, 1) for a bias as a column."))
            object.__setattr__(self, "view_shape", vs)
        if self.groups is not None:
            gs = _shape(self.groups, where, "groups", allow_empty=False)
            if any(g < 1 for g in gs) or self.block != ():
                raise RuleError(describe(where, "groups", "sizes >= 1, and block left empty", (gs, self.block),
                                         "give either block= (sizes) or groups= (counts), not both."))
            object.__setattr__(self, "groups", gs)
        if isinstance(self.chunks, bool) or not isinstance(self.chunks, int) or self.chunks < 1:
            raise RuleError(describe(where, "chunks", "an int >= 1", repr(self.chunks),
                                     "use 1, or 3 for a fused q/k/v projection."))


@dataclass(frozen=True)
class CoupleRule:
    """One coupled scope spec per layer, from parts matched by name.

    For each layer key (the text the wildcards capture) the matching parameter
    of every part contributes its view(s) to one
    :class:`~sparsekit_fx.BlockCoupling`; the result is wrapped in
    ``ScopeSpec(coupling, scope)``.

    Args:
        parts: The :class:`Part` s to couple (at least one).
        scope: Scope shape over the coupled grid (``()`` = one scope per layer).
        name: Label used in messages and as the specs' name prefix.
    """

    parts: Tuple[Part, ...]
    scope: Shape = ()
    name: Optional[str] = None
    _regexes: Tuple[Any, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = f"CoupleRule({self.name!r})" if self.name else "CoupleRule"
        parts = tuple(self.parts) if isinstance(self.parts, (tuple, list)) else ()
        if not parts or not all(isinstance(p, Part) for p in parts):
            raise RuleError(describe(where, "parts", "a non-empty tuple of Part", repr(self.parts),
                                     "pass e.g. (Part('*.fc1.weight', (1, -1)), Part('*.fc2.weight', (-1, 1), (1, 0)))."))
        regexes = tuple(_compile(p.pattern) for p in parts)
        counts = {r.groups for r in regexes}
        if len(counts) != 1:
            got = {p.pattern: r.groups for p, r in zip(parts, regexes)}
            raise RuleError(describe(where, "parts", "patterns with the same number of wildcards (the layer key)",
                                     got, "use one '*' per varying name segment in every part, e.g. '*.fc1.weight' "
                                          "and '*.fc2.weight'."))
        object.__setattr__(self, "parts", parts)
        object.__setattr__(self, "scope", _shape(self.scope, where, "scope"))
        object.__setattr__(self, "_regexes", regexes)

    @property
    def label(self) -> str:
        """How the rule is named in messages."""
        if self.name:
            return f"CoupleRule({self.name!r})"
        return f"CoupleRule({', '.join(repr(p.pattern) for p in self.parts)})"


Rule = Union[BlockRule, CoupleRule]


def channel_rule(fc1: str, fc2: str, *, bias: Optional[str] = None, scope: Shape = (),
                 name: Optional[str] = None) -> CoupleRule:
    """Pure: couple hidden channels: row ``i`` of ``fc1`` (and ``bias[i]``) with column ``i`` of ``fc2``.

    Args:
        fc1: Pattern of the first linear weight, shape ``(hidden, in)``.
        fc2: Pattern of the second linear weight, shape ``(out, hidden)``.
        bias: Optional pattern of ``fc1``'s bias, shape ``(hidden,)``.
        scope: Channels per scope (``()``: all channels of a layer compete).
        name: Rule label.

    Example:
        ``channel_rule("*.fc1.weight", "*.fc2.weight", bias="*.fc1.bias")``
    """
    parts = [Part(fc1, (1, -1)), Part(fc2, (-1, 1), order=(1, 0))]
    if bias is not None:
        parts.insert(1, Part(bias, (1, 1), view_shape=(-1, 1)))
    return CoupleRule(tuple(parts), scope=scope, name=name or "channels")


def head_rule(num_heads: int, *, out: str, q: Optional[str] = None, k: Optional[str] = None,
              v: Optional[str] = None, in_proj: Optional[str] = None, scope: Shape = (),
              name: Optional[str] = None) -> CoupleRule:
    """Pure: couple attention heads: the rows of q, k, v and the columns of ``out`` of each head.

    Give either separate ``q``/``k``/``v`` patterns (each ``(E, E)``) or one
    fused ``in_proj`` pattern (``(3E, E)``, as ``nn.MultiheadAttention``).
    Head ``h`` spans rows ``h*E/H : (h+1)*E/H`` of q, k, v and the same columns
    of ``out``.

    Args:
        num_heads: Number of heads ``H``; blocks are ``E // H`` rows or columns.
        out: Pattern of the output projection weight ``(E, E)``.
        q, k, v: Patterns of separate projection weights.
        in_proj: Pattern of a fused projection weight.
        scope: Heads per scope (``()``: all heads of a layer compete).
        name: Rule label.

    The head size ``E // H`` is computed from each matched parameter
    (:class:`Part` ``groups``).
    """
    where = "head_rule"
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
        raise RuleError(describe(where, "num_heads", "an int >= 1", repr(num_heads), "pass the model's head count."))
    if (in_proj is None) == (q is None and k is None and v is None) or (in_proj is None and None in (q, k, v)):
        raise RuleError(describe(where, "q/k/v/in_proj", "either all of q, k, v or in_proj alone",
                                 {"q": q, "k": k, "v": v, "in_proj": in_proj},
                                 "pass q=, k=, v= for separate projections or in_proj= for a fused one."))
    if in_proj is not None:
        parts = [Part(in_proj, groups=(num_heads, 1), chunks=3)]
    else:
        parts = [Part(q, groups=(num_heads, 1)), Part(k, groups=(num_heads, 1)),  # type: ignore[arg-type]
                 Part(v, groups=(num_heads, 1))]  # type: ignore[arg-type]
    parts.append(Part(out, groups=(1, num_heads), order=(1, 0)))
    return CoupleRule(tuple(parts), scope=scope, name=name or "heads")


def _block_of(part: Part, view_shape: Shape) -> Shape:
    """The block shape of ``part`` over a view of ``view_shape``."""
    if part.groups is None:
        return part.block
    if len(part.groups) != len(view_shape):
        raise ShapeProblem(f"groups {part.groups} has {len(part.groups)} dims, the view {view_shape} has "
                           f"{len(view_shape)}")
    bad = [(s, g) for s, g in zip(view_shape, part.groups) if s % g]
    if bad:
        raise ShapeProblem(f"a dim of size {bad[0][0]} cannot be cut into {bad[0][1]} equal groups")
    return tuple(s // g for s, g in zip(view_shape, part.groups))


# ---------------------------------------------------------------------------
# matching
# ---------------------------------------------------------------------------


def _compile(pattern: str) -> Any:
    """Pure: a regex for a shell-style pattern; each ``*``/``?`` is a capture group."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append("(.*)")
        elif c == "?":
            out.append("(.)")
        elif c == "[":
            j = pattern.find("]", i + 2 if pattern[i + 1:i + 2] in ("!", "]") else i + 1)
            if j == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:j]
                body = "^" + body[1:] if body.startswith("!") else body
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z", re.S)


def _named_tensors(model: Any) -> Dict[str, Any]:
    if isinstance(model, nn.Module):
        return dict(model.named_parameters())
    if isinstance(model, Mapping):
        return dict(model)
    raise RuleError(describe("specs_from_module", "model", "an nn.Module or a mapping of name -> Tensor",
                             type(model).__name__, "pass the model, or dict(model.named_parameters())."))


def _views(part: Part, name: str, shape: Shape) -> List[View]:
    """The view(s) a part takes of parameter ``name`` (validated by View)."""
    if part.chunks == 1 and part.view_shape is None:
        return [View(name, shape)]
    if not shape or shape[0] % part.chunks:
        raise ShapeProblem(f"dim 0 of shape {shape} is not divisible into chunks={part.chunks} equal parts")
    chunk = (shape[0] // part.chunks,) + tuple(shape[1:])
    n = math.prod(chunk)
    vshape = chunk
    if part.view_shape is not None:
        known = math.prod(v for v in part.view_shape if v != -1)
        if -1 in part.view_shape:
            if known == 0 or n % known:
                raise ShapeProblem(f"view_shape {part.view_shape} cannot reshape {n} elements")
            vshape = tuple(n // known if v == -1 else v for v in part.view_shape)
        else:
            vshape = part.view_shape
        if math.prod(vshape) != n:
            raise ShapeProblem(f"view_shape {part.view_shape} holds {math.prod(vshape)} elements, not {n}")
    return [View(name, shape, shape=vshape, offset=i * n) for i in range(part.chunks)]


class ShapeProblem(Exception):
    """Internal: a part does not fit a parameter (turned into a RuleError)."""


def _fit_error(rule: Any, names: Sequence[str], shapes: Sequence[Shape], err: BaseException) -> RuleError:
    got = ", ".join(f"{n!r} of shape {tuple(s)}" for n, s in zip(names, shapes))
    return RuleError(describe(
        f"specs_from_module: rule {rule.label}", "parameter" + ("s" if len(names) > 1 else ""),
        "parameters the rule's block and scope shapes fit", f"{got}: {err}",
        "change the rule's block/scope shapes (sizes must divide the parameter's dims), "
        "or narrow its pattern so it skips this parameter."))


def _apply_block_rule(rule: BlockRule, named: Dict[str, Any], claimed: Dict[str, Any], index: int
                      ) -> List[ScopeSpec]:
    rx = _compile(rule.pattern)
    out = []
    for name, t in named.items():
        if not rx.match(name):
            continue
        _claim(claimed, name, rule, index)
        shape = tuple(t.shape)
        try:
            block = BlockSpec(View(name, shape), rule.block, name=name)
            out.append(ScopeSpec(block, rule.scope, name=f"{rule.name or rule.pattern}:{name}"))
        except SparseKitError as e:
            raise _fit_error(rule, [name], [shape], e) from e
    if not out:
        raise _nothing(rule, rule.pattern, named)
    return out


def _apply_couple_rule(rule: CoupleRule, named: Dict[str, Any], claimed: Dict[str, Any], index: int
                       ) -> List[ScopeSpec]:
    # layer key -> one matched name per part
    layers: Dict[Tuple[str, ...], List[Optional[str]]] = {}
    for i, (part, rx) in enumerate(zip(rule.parts, rule._regexes)):
        hits = 0
        for name in named:
            m = rx.match(name)
            if not m:
                continue
            hits += 1
            slot = layers.setdefault(m.groups(), [None] * len(rule.parts))
            if slot[i] is not None:
                raise RuleError(describe(
                    f"specs_from_module: rule {rule.label}", f"parts[{i}] ({part.pattern!r})",
                    "one parameter per layer key", f"{slot[i]!r} and {name!r} both with key {m.groups()}",
                    "use a '*' for the part of the name that differs between layers."))
            slot[i] = name
        if hits == 0:
            raise _nothing(rule, part.pattern, named)
    out = []
    for key, names in layers.items():
        missing = [rule.parts[i].pattern for i, n in enumerate(names) if n is None]
        if missing:
            have = [n for n in names if n is not None]
            raise RuleError(describe(
                f"specs_from_module: rule {rule.label}", "parameter", f"a partner matching {missing} for layer key {key}",
                f"{have} without one", "make every part's pattern match this layer, or narrow the other patterns."))
        for n in names:
            _claim(claimed, n, rule, index)  # type: ignore[arg-type]
        shapes = [tuple(named[n].shape) for n in names]  # type: ignore[index]
        try:
            blocks, orders = [], []
            for part, n, shape in zip(rule.parts, names, shapes):
                for v in _views(part, n, shape):  # type: ignore[arg-type]
                    blocks.append(BlockSpec(v, _block_of(part, v.shape), name=n))
                    orders.append(part.order)
            full_orders = None if all(o is None for o in orders) else tuple(
                o if o is not None else tuple(range(b.ndim)) for o, b in zip(orders, blocks))
            label = f"{rule.name or 'coupled'}:{'.'.join(key) if key else names[0]}"
            coupling = BlockCoupling(tuple(blocks), full_orders, name=label)
            out.append(ScopeSpec(coupling, rule.scope, name=label))
        except (SparseKitError, ShapeProblem) as e:
            raise _fit_error(rule, names, shapes, e) from e  # type: ignore[arg-type]
    return out


def _claim(claimed: Dict[str, Tuple[int, str]], name: str, rule: Any, index: int) -> None:
    if name in claimed and claimed[name][0] != index:
        raise RuleError(describe(
            f"specs_from_module: rule {rule.label}", "parameter", "a parameter no earlier rule has claimed",
            f"{name!r}, already matched by rules[{claimed[name][0]}] {claimed[name][1]}",
            "make the patterns disjoint, or pass allow_overlap=True to stack layouts on one parameter "
            "(e.g. channels, then 2:4; specs then apply in rule order)."))
    claimed[name] = (index, rule.label)


def _nothing(rule: Any, pattern: str, named: Dict[str, Any]) -> RuleError:
    names = list(named)
    shown = names[:8] + (["..."] if len(names) > 8 else [])
    return RuleError(describe(
        f"specs_from_module: rule {rule.label}", "pattern", f"at least one parameter name matching {pattern!r}",
        f"no match among {shown}", "fix the pattern ('*' matches any characters, dots included), or drop the rule."))


def specs_from_module(model: Any, rules: Sequence[Rule], *, allow_overlap: bool = False) -> Tuple[ScopeSpec, ...]:
    """Pure: the spec tree that ``rules`` describe for ``model``'s parameters.

    Args:
        model: An ``nn.Module`` (its ``named_parameters()``) or a mapping of
            parameter name to tensor. Only names and shapes are read.
        rules: :class:`BlockRule` and :class:`CoupleRule` objects, applied in
            order. Each parameter may be claimed by at most one rule, unless
            ``allow_overlap``.
        allow_overlap: Let several rules match one parameter (e.g. channels,
            then 2:4). The tree's specs then apply in rule order: ops give a
            later spec the earlier one's result. Off by default, so that an
            accidental double match (``*.weight`` and ``*.fc1.weight``) fails.

    Returns:
        A tuple of ScopeSpecs, in rule order, then parameter (or layer) order.
        It holds no tensors, so it is hashable and a constant under
        ``torch.compile``.

    Raises:
        RuleError: A rule (or one of its parts) matches no parameter; a
            matched parameter does not fit the rule's shapes; a coupled
            layer lacks a partner; or (without ``allow_overlap``) a parameter
            is matched by two rules.
            The message names the rule and the parameter.

    Example:
        ::

            tree = skf.specs_from_module(model, [
                skf.channel_rule("*.fc1.weight", "*.fc2.weight", bias="*.fc1.bias"),
            ])
            two_four = skf.specs_from_module(model, [skf.BlockRule("*.fc?.weight", (1, 1), (1, 4))])
    """
    named = _named_tensors(model)
    if isinstance(rules, (BlockRule, CoupleRule)):
        rules = (rules,)
    claims: Dict[str, Tuple[int, str]] = {}
    out: List[ScopeSpec] = []
    for i, rule in enumerate(rules):
        claimed = {} if allow_overlap else claims
        if isinstance(rule, BlockRule):
            out += _apply_block_rule(rule, named, claimed, i)
        elif isinstance(rule, CoupleRule):
            out += _apply_couple_rule(rule, named, claimed, i)
        else:
            raise RuleError(describe("specs_from_module", f"rules[{i}]", "a BlockRule or CoupleRule",
                                     type(rule).__name__, "build rules with BlockRule(...), CoupleRule(...), "
                                                          "channel_rule(...) or head_rule(...)."))
    return tuple(out)
