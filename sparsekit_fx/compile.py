"""One-line compiled steps over a spec tree.

:func:`compile_step` wraps a pure step ``fn(params, spec, *args, **kwargs)`` in
``torch.compile(fullgraph=True)`` once per ``(fn, spec tree)`` and caches it,
so a training loop calls one compiled graph per step. Each cached step gets
its own code object, so Dynamo's per-function recompile limit is never shared
between different trees (under ``fullgraph=True`` hitting that limit is a hard
error).

What compiles, and what recompiles:

* The spec tree is a constant of the graph: a different layout compiles a new
  step (a new cache entry, not a recompile); an *equal* spec tree (even other
  instances, other ``name`` labels) reuses the cached step.
* Tensor hyper-parameters (``nnz``, ``sparsity``, ``thresholds``, ``lam``,
  ``lr``, a schedule's step) are graph inputs: changing their values never
  recompiles. Python numbers are baked into the graph: a new value recompiles.
  Pass ``torch.tensor(x)`` for anything that changes between steps.
* Changing a parameter's shape, dtype, device or ``requires_grad``, the set of
  keys of ``params``, or the batching switch recompiles.

Set the environment variable ``SPARSEKIT_FX_EAGER=1`` to get the plain Python
step instead (for debugging with prints and breakpoints).
"""

from __future__ import annotations

import functools
import os
import types
from collections import OrderedDict
from typing import Any, Callable, Dict, Hashable, Tuple

import torch
from torch.utils import _pytree as pytree

from .errors import ArgumentError, describe
from .specs import is_spec

__all__ = ["compile_step", "eager_mode", "clear_cache"]

_CACHE: "OrderedDict[Hashable, Callable[..., Any]]" = OrderedDict()
_CACHE_SIZE = 64
_COUNTER = [0]


def eager_mode() -> bool:
    """Pure: whether ``SPARSEKIT_FX_EAGER`` asks for uncompiled steps."""
    return os.environ.get("SPARSEKIT_FX_EAGER", "").strip().lower() not in ("", "0", "false", "no")


def clear_cache() -> None:
    """Mutates: forget every cached compiled step."""
    _CACHE.clear()


def _tree_key(spec: Any) -> Hashable:
    leaves, treedef = pytree.tree_flatten(spec, is_leaf=is_spec)
    return (tuple(leaves), repr(treedef))


def _fresh_code(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Pure: a copy of ``fn`` with its own code object (its own Dynamo cache)."""
    _COUNTER[0] += 1
    code = fn.__code__.replace(co_name=f"{fn.__code__.co_name}_{_COUNTER[0]}")
    new = types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)
    return functools.wraps(fn)(new)


def _make_step(fn: Callable[..., Any], spec: Any, inplace: bool) -> Callable[..., Any]:
    if not inplace:
        def step(params: Any, *args: Any, **kwargs: Any) -> Any:
            return fn(params, spec, *args, **kwargs)

        return step

    def step_(params: Any, *args: Any, **kwargs: Any) -> None:
        new = fn(params, spec, *args, **kwargs)
        with torch.no_grad():
            for name, value in new.items():
                if value is not params[name]:
                    params[name].copy_(value)

    return step_


def compile_step(fn: Callable[..., Any], spec: Any, *, inplace: bool = False, **compile_kwargs: Any) -> Callable[..., Any]:
    """Pure: a compiled, cached ``step(params, *args, **kwargs) = fn(params, spec, *args, **kwargs)``.

    Args:
        fn: A pure step taking ``(params, spec, ...)`` and returning new params
            (or anything else), e.g. :func:`~sparsekit_fx.hard_threshold`.
        spec: A spec or spec tree; it becomes a constant of the graph.
        inplace: If True, the returned ``step_(params, ...)`` mutates: it
            copies ``fn``'s returned params into the tensors of ``params``
            inside the compiled graph (under ``no_grad``) and returns None, so
            Inductor can write results straight into the parameters' storage.
            ``fn`` must return a params-like dict. The default, ``False``,
            keeps steps pure; write back with :func:`~sparsekit_fx.write_through_`.
        **compile_kwargs: Passed to ``torch.compile`` (``fullgraph=True`` is
            always used).

    Returns:
        The compiled step (the plain Python step if ``SPARSEKIT_FX_EAGER=1``).
        Equal ``(fn, spec, options)`` return the same cached object.
    """
    if not callable(fn):
        raise ArgumentError(describe("compile_step", "fn", "a callable fn(params, spec, ...)", type(fn).__name__,
                                     "pass e.g. sparsekit_fx.hard_threshold."))
    if compile_kwargs.pop("fullgraph", True) is not True:
        raise ArgumentError(describe("compile_step", "fullgraph", "True (steps compile as one graph)", False,
                                     "drop the fullgraph argument, or call torch.compile yourself."))
    step = _make_step(fn, spec, inplace)
    if eager_mode():
        return step
    key = (fn, _tree_key(spec), inplace, tuple(sorted(compile_kwargs.items())))
    try:
        hit = _CACHE.get(key)
    except TypeError:  # unhashable compile options: do not cache
        return torch.compile(_fresh_code(step), fullgraph=True, **compile_kwargs)
    if hit is None:
        hit = torch.compile(_fresh_code(step), fullgraph=True, **compile_kwargs)
        _CACHE[key] = hit
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    return hit
