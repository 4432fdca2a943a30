"""A fluent, persistent builder of spec trees, addressed by name.

:class:`SpecBuilder` is sparsekit_fx's counterpart of sparsekit's
``SparsityBuilder``: add blocks, couple blocks, add scopes and couple scopes,
each under a name, then :meth:`SpecBuilder.build` the spec tree. Unlike a
mutable builder, every method returns a *new* builder and leaves the old one
unchanged, so partial builders can be shared and branched safely::

    tree = (
        skf.SpecBuilder(model)
        .add_block("fc1", "fc1.weight", (1, -1))
        .add_block("fc2", "fc2.weight", (-1, 1))
        .couple_blocks("ch", ["fc1", "fc2"], orders=[(0, 1), (1, 0)])
        .add_scope("channels", "ch", ())
        .build()
    )

Names are unique across all four kinds. Each spec can be used once: by one
scope (a block) or by one coupling (a block or a scope), because a spec tree
covers every parameter element at most once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Dict, Optional, Sequence, Tuple

from torch import Tensor, nn

from .errors import BuilderError, DuplicateNameError, ParamError, UnknownNameError, describe
from .specs import BlockCoupling, BlockSpec, ScopeCoupling, ScopeSpec, View

__all__ = ["SpecBuilder"]

_BLOCKS = (BlockSpec, BlockCoupling)
_SCOPES = (ScopeSpec, ScopeCoupling)


class SpecBuilder:
    """Persistent fluent builder of spec trees (every method returns a new builder).

    Args:
        params: Optional source of parameter shapes: an ``nn.Module`` or a
            mapping of name to tensor (or to a shape tuple). Needed only when
            :meth:`add_block` is given a parameter *name* instead of a View.
    """

    __slots__ = ("_shapes", "_specs", "_used_by")

    def __init__(self, params: Any = None) -> None:
        self._shapes: Dict[str, Tuple[int, ...]] = _shapes_of(params)
        self._specs: Dict[str, Any] = {}  # name -> spec, insertion-ordered
        self._used_by: Dict[str, str] = {}  # name -> name of the spec that consumed it

    # -- persistence -----------------------------------------------------

    def _with(self, name: str, spec: Any, consumes: Sequence[str]) -> "SpecBuilder":
        new = SpecBuilder.__new__(SpecBuilder)
        new._shapes = self._shapes
        new._specs = dict(self._specs)
        new._specs[name] = spec
        new._used_by = dict(self._used_by)
        for c in consumes:
            new._used_by[c] = name
        return new

    # -- lookups -----------------------------------------------------------

    def names(self) -> Tuple[str, ...]:
        """Pure: every name added so far, in insertion order."""
        return tuple(self._specs)

    def get(self, name: str) -> Any:
        """Pure: the spec registered under ``name``.

        Raises:
            UnknownNameError: No spec has this name.
        """
        return self._lookup(name, "get", "name", unused=False)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __repr__(self) -> str:
        kinds = ", ".join(f"{n}: {type(s).__name__}" for n, s in self._specs.items())
        return f"SpecBuilder({kinds})"

    def _lookup(self, name: Any, where: str, arg: str, kinds: Tuple[type, ...] = (), kind_text: str = "",
                unused: bool = True) -> Any:
        if name not in self._specs:
            known = list(self._specs) or "nothing yet"
            raise UnknownNameError(describe(
                f"SpecBuilder.{where}", arg, "the name of a spec added earlier", f"{name!r}; known: {known}",
                "add it first (add_block / couple_blocks / add_scope / couple_scopes), or fix the spelling."))
        spec = self._specs[name]
        if kinds and not isinstance(spec, kinds):
            raise BuilderError(describe(
                f"SpecBuilder.{where}", arg, kind_text, f"{name!r}, a {type(spec).__name__}",
                "blocks go into scopes and block couplings; scopes go into scope couplings."))
        if unused and name in self._used_by:
            raise BuilderError(describe(
                f"SpecBuilder.{where}", arg, "a spec not used yet (each spec is used once)",
                f"{name!r}, already used by {self._used_by[name]!r}",
                "a tree covers each element once: couple everything that shares a budget in one coupling."))
        return spec

    def _new_name(self, name: Any, where: str) -> str:
        if not isinstance(name, str) or not name:
            raise BuilderError(describe(f"SpecBuilder.{where}", "name", "a non-empty str", repr(name),
                                        "name every spec, e.g. 'fc1'."))
        if name in self._specs:
            raise DuplicateNameError(describe(
                f"SpecBuilder.{where}", "name", "a name not used yet",
                f"{name!r}, already a {type(self._specs[name]).__name__}", "pick another name."))
        return name

    # -- building ------------------------------------------------------------

    def add_block(self, name: str, view: Any, shape: Sequence[int] = ()) -> "SpecBuilder":
        """Pure: a new builder with ``BlockSpec(view, shape)`` under ``name``.

        Args:
            name: Name of the new block spec (unique).
            view: A :class:`~sparsekit_fx.View`, or a parameter name whose
                shape is looked up in the builder's ``params``.
            shape: Block shape (``-1`` spans a dim, ``()`` single elements).

        Raises:
            DuplicateNameError: ``name`` is taken.
            ParamError: ``view`` names a parameter the builder does not know.
            SparseKitError: The block shape does not fit (from BlockSpec).
        """
        where = "add_block"
        name = self._new_name(name, where)
        if isinstance(view, str):
            if view not in self._shapes:
                known = sorted(self._shapes)[:8]
                raise ParamError(describe(
                    f"SpecBuilder.{where}", "view", "a View, or a parameter name the builder knows",
                    f"{view!r}; known: {known or 'none (no params given)'}",
                    "pass SpecBuilder(model) or SpecBuilder(params), or pass a View."))
            view = View(view, self._shapes[view])
        elif isinstance(view, Tensor):
            raise BuilderError(describe(f"SpecBuilder.{where}", "view", "a View or a parameter name", "a Tensor",
                                        "tensors carry no name: use View.of(name, tensor)."))
        return self._with(name, BlockSpec(view, tuple(shape), name=name), ())

    def couple_blocks(self, name: str, blocks: Sequence[str], orders: Optional[Sequence[Any]] = None
                      ) -> "SpecBuilder":
        """Pure: a new builder with a BlockCoupling of the named block specs.

        Args:
            name: Name of the coupling (unique).
            blocks: Names of BlockSpecs added earlier and not used yet.
            orders: One grid permutation per block (``None`` = identity).

        Raises:
            DuplicateNameError, UnknownNameError, BuilderError, CouplingError.
        """
        where = "couple_blocks"
        name = self._new_name(name, where)
        specs = self._members(blocks, where, "blocks", (BlockSpec,), "the name of a BlockSpec")
        return self._with(name, BlockCoupling(specs, None if orders is None else tuple(orders), name=name), blocks)

    def add_scope(self, name: str, block: str, shape: Sequence[int] = ()) -> "SpecBuilder":
        """Pure: a new builder with ``ScopeSpec(block, shape)`` under ``name``.

        Args:
            name: Name of the scope (unique).
            block: Name of a BlockSpec or BlockCoupling not used yet.
            shape: Blocks per scope per grid dim (``()`` = one scope of all).
        """
        where = "add_scope"
        name = self._new_name(name, where)
        spec = self._lookup(block, where, "block", _BLOCKS, "the name of a BlockSpec or BlockCoupling")
        return self._with(name, ScopeSpec(spec, tuple(shape), name=name), (block,))

    def couple_scopes(self, name: str, scopes: Sequence[str], orders: Optional[Sequence[Any]] = None
                      ) -> "SpecBuilder":
        """Pure: a new builder with a ScopeCoupling of the named ScopeSpecs (one shared budget)."""
        where = "couple_scopes"
        name = self._new_name(name, where)
        specs = self._members(scopes, where, "scopes", (ScopeSpec,), "the name of a ScopeSpec")
        return self._with(name, ScopeCoupling(specs, None if orders is None else tuple(orders), name=name), scopes)

    def _members(self, names: Any, where: str, arg: str, kinds: Tuple[type, ...], text: str) -> Tuple[Any, ...]:
        if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names:
            raise BuilderError(describe(f"SpecBuilder.{where}", arg, "a non-empty list of names", repr(names),
                                        f"pass e.g. {arg}=['a', 'b']."))
        if len(set(names)) != len(names):
            raise DuplicateNameError(describe(f"SpecBuilder.{where}", arg, "each name once", list(names),
                                              "list every spec once."))
        return tuple(self._lookup(n, where, f"{arg}[{i}]", kinds, text) for i, n in enumerate(names))

    def build(self) -> Tuple[Any, ...]:
        """Pure: the spec tree: every scope or scope coupling not used by another, in insertion order.

        Raises:
            BuilderError: A block or block coupling is in no scope (a tree is
                made of scopes), or nothing was added.
        """
        top = [(n, s) for n, s in self._specs.items() if n not in self._used_by]
        loose = [n for n, s in top if isinstance(s, _BLOCKS)]
        if loose:
            raise BuilderError(describe("SpecBuilder.build", "blocks", "every block inside a scope or coupling",
                                        f"{loose} in none", f"add_scope('<name>', {loose[0]!r}, ()) for each."))
        if not top:
            raise BuilderError(describe("SpecBuilder.build", "specs", "at least one scope", "an empty builder",
                                        "add blocks and scopes first."))
        return tuple(s for _, s in top)


def _shapes_of(params: Any) -> Dict[str, Tuple[int, ...]]:
    if params is None:
        return {}
    if isinstance(params, nn.Module):
        params = dict(params.named_parameters())
    if not isinstance(params, Mapping):
        raise ParamError(describe("SpecBuilder", "params", "an nn.Module or a mapping of name -> Tensor or shape",
                                  type(params).__name__, "pass the model or dict(model.named_parameters())."))
    return {k: tuple(v.shape) if isinstance(v, Tensor) else tuple(v) for k, v in params.items()}
