"""Spec trees to and from JSON, with a versioned, stable schema.

The document written by :func:`specs_to_json` is::

    {"format": "sparsekit_fx.specs", "version": 1, "tree": <node>}

A ``<node>`` is a spec, or a container of nodes, each an object with a
``"type"``:

* ``{"type": "tuple" | "list", "items": [<node>, ...]}``
* ``{"type": "dict", "items": {"<str key>": <node>, ...}}``
* ``{"type": "View", "param": str, "param_shape": [int], "shape": [int], "stride": [int], "offset": int}``
* ``{"type": "BlockSpec", "view": <View>, "shape": [int], "name": str|null}``, plus
  ``"pad": true`` for a spec with partial edge blocks (absent means false)
* ``{"type": "BlockCoupling", "specs": [<BlockSpec>], "orders": [[int]], "name": str|null}``
* ``{"type": "ScopeSpec", "block": <BlockSpec|BlockCoupling>, "shape": [int], "name": str|null}``
* ``{"type": "ScopeCoupling", "scopes": [<ScopeSpec>], "orders": [[int]], "name": str|null}``

so any spec tree (a spec, or tuples, lists and string-keyed dicts of specs)
round-trips exactly. Shapes are stored resolved (no ``-1``), so a file does not
depend on the defaults of the version that wrote it. Loading re-runs every
constructor, so a file describing an invalid layout fails with the usual
:class:`~sparsekit_fx.errors.SparseKitError`, wrapped in a
:class:`~sparsekit_fx.errors.FormatError` that says where in the file.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Tuple, Union

from .errors import FormatError, SparseKitError, describe
from .specs import BlockCoupling, BlockSpec, ScopeCoupling, ScopeSpec, View
from .tree import flatten_specs

__all__ = [
    "SPECS_FORMAT",
    "SPECS_VERSION",
    "spec_to_dict",
    "spec_from_dict",
    "specs_to_json",
    "specs_from_json",
    "save_specs",
    "load_specs",
]

#: The ``"format"`` tag of a spec-tree document.
SPECS_FORMAT = "sparsekit_fx.specs"
#: The schema version this library writes and reads.
SPECS_VERSION = 1

PathLike = Union[str, "os.PathLike[str]"]


# ---------------------------------------------------------------------------
# spec <-> dict
# ---------------------------------------------------------------------------


def spec_to_dict(spec: Any) -> Dict[str, Any]:
    """Pure: the JSON-ready dict of one spec (see module doc for the schema)."""
    if isinstance(spec, View):
        return {"type": "View", "param": spec.param, "param_shape": list(spec.param_shape),
                "shape": list(spec.shape), "stride": list(spec.stride), "offset": spec.offset}
    if isinstance(spec, BlockSpec):
        out = {"type": "BlockSpec", "view": spec_to_dict(spec.view), "shape": list(spec.shape), "name": spec.name}
        if spec.pad:  # written only when set, so files of unpadded specs are unchanged
            out["pad"] = True
        return out
    if isinstance(spec, BlockCoupling):
        return {"type": "BlockCoupling", "specs": [spec_to_dict(s) for s in spec.specs],
                "orders": [list(o) for o in spec.orders], "name": spec.name}
    if isinstance(spec, ScopeSpec):
        return {"type": "ScopeSpec", "block": spec_to_dict(spec.block), "shape": list(spec.shape), "name": spec.name}
    if isinstance(spec, ScopeCoupling):
        return {"type": "ScopeCoupling", "scopes": [spec_to_dict(s) for s in spec.scopes],
                "orders": [list(o) for o in spec.orders], "name": spec.name}
    raise FormatError(describe("spec_to_dict", "spec", "a spec", type(spec).__name__, "pass a spec."))


_FIELDS = {
    "View": ("param", "param_shape", "shape", "stride", "offset"),
    "BlockSpec": ("view", "shape", "name"),
    "BlockCoupling": ("specs", "orders", "name"),
    "ScopeSpec": ("block", "shape", "name"),
    "ScopeCoupling": ("scopes", "orders", "name"),
}


def _get(d: Dict[str, Any], key: str, path: str, kind: str) -> Any:
    if key not in d:
        raise FormatError(describe("spec_from_dict", path, f"a {kind} object with key {key!r}",
                                   f"keys {sorted(d)}", "the file is incomplete or hand-edited; re-save it."))
    return d[key]


def _ints(x: Any, path: str) -> Tuple[int, ...]:
    if not isinstance(x, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in x):
        raise FormatError(describe("spec_from_dict", path, "a list of ints", repr(x), "re-save the file."))
    return tuple(x)


def _list(x: Any, path: str) -> List[Any]:
    if not isinstance(x, list) or not x:
        raise FormatError(describe("spec_from_dict", path, "a non-empty list", repr(x), "re-save the file."))
    return x


def spec_from_dict(d: Any, path: str = "spec") -> Any:
    """Pure: rebuild one spec from :func:`spec_to_dict` output.

    Raises:
        FormatError: A key is missing, a value has the wrong type, the type is
            unknown, or the layout is invalid (the spec error is chained).
    """
    if not isinstance(d, dict):
        raise FormatError(describe("spec_from_dict", path, "a JSON object", type(d).__name__, "re-save the file."))
    kind = d.get("type")
    if kind not in _FIELDS:
        raise FormatError(describe("spec_from_dict", f"{path}.type", f"one of {sorted(_FIELDS)}", repr(kind),
                                   "the file is not a sparsekit_fx spec tree, or is corrupt."))
    f = {k: _get(d, k, path, kind) for k in _FIELDS[kind]}
    try:
        if kind == "View":
            return View(f["param"], _ints(f["param_shape"], f"{path}.param_shape"), _ints(f["shape"], f"{path}.shape"),
                        _ints(f["stride"], f"{path}.stride"), f["offset"])
        if kind == "BlockSpec":
            return BlockSpec(spec_from_dict(f["view"], f"{path}.view"), _ints(f["shape"], f"{path}.shape"), f["name"],
                             pad=d.get("pad", False))
        if kind == "ScopeSpec":
            return ScopeSpec(spec_from_dict(f["block"], f"{path}.block"), _ints(f["shape"], f"{path}.shape"),
                             f["name"])
        members = "specs" if kind == "BlockCoupling" else "scopes"
        items = tuple(spec_from_dict(s, f"{path}.{members}[{i}]")
                      for i, s in enumerate(_list(f[members], f"{path}.{members}")))
        orders = tuple(_ints(o, f"{path}.orders[{i}]") for i, o in enumerate(_list(f["orders"], f"{path}.orders")))
        cls = BlockCoupling if kind == "BlockCoupling" else ScopeCoupling
        return cls(items, orders, f["name"])
    except FormatError:
        raise
    except SparseKitError as e:
        raise FormatError(describe("spec_from_dict", path, f"a valid {kind}", str(e),
                                   "the file describes an invalid layout; fix or re-save it.")) from e


# ---------------------------------------------------------------------------
# trees <-> JSON text and files
# ---------------------------------------------------------------------------


def _encode(node: Any, path: str) -> Any:
    if isinstance(node, (tuple, list)):
        return {"type": type(node).__name__, "items": [_encode(x, f"{path}[{i}]") for i, x in enumerate(node)]}
    if isinstance(node, dict):
        bad = [k for k in node if not isinstance(k, str)]
        if bad:
            raise FormatError(describe("specs_to_json", path, "dict keys that are str", repr(bad[0]),
                                       "key spec-tree dicts by name (JSON objects have string keys)."))
        return {"type": "dict", "items": {k: _encode(v, f"{path}[{k!r}]") for k, v in node.items()}}
    return spec_to_dict(node)


def _decode(node: Any, path: str) -> Any:
    kind = node.get("type") if isinstance(node, dict) else None
    if kind in ("tuple", "list"):
        items = node.get("items")
        if not isinstance(items, list):
            raise FormatError(describe("specs_from_json", f"{path}.items", "a list", repr(items), "re-save the file."))
        out = [_decode(x, f"{path}[{i}]") for i, x in enumerate(items)]
        return tuple(out) if kind == "tuple" else out
    if kind == "dict":
        items = node.get("items")
        if not isinstance(items, dict):
            raise FormatError(describe("specs_from_json", f"{path}.items", "an object", repr(items), "re-save the file."))
        return {k: _decode(v, f"{path}[{k!r}]") for k, v in items.items()}
    return spec_from_dict(node, path)


def specs_to_json(specs: Any, *, indent: Union[int, None] = 1) -> str:
    """Pure: a JSON document for a spec or a spec tree (tuples, lists, str-keyed dicts of specs).

    Raises:
        SpecError: The tree is empty or holds something other than specs.
        FormatError: A dict key is not a str.
    """
    flatten_specs(specs, "specs_to_json")  # validates: non-empty, every leaf a spec
    doc = {"format": SPECS_FORMAT, "version": SPECS_VERSION, "tree": _encode(specs, "tree")}
    return json.dumps(doc, indent=indent)


def specs_from_json(text: Union[str, bytes]) -> Any:
    """Pure: the spec tree stored in a JSON document by :func:`specs_to_json`.

    Returns:
        The tree as saved (same containers), equal (``==``, names included)
        to the original.

    Raises:
        FormatError: Not JSON, not a sparsekit_fx spec document, a version this
            library cannot read, or an invalid spec inside.
    """
    where = "specs_from_json"
    try:
        doc = json.loads(text)
    except (ValueError, TypeError) as e:
        raise FormatError(describe(where, "text", "a JSON document", f"invalid JSON ({e})",
                                   "pass the text written by specs_to_json / save_specs.")) from e
    if not isinstance(doc, dict) or doc.get("format") != SPECS_FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise FormatError(describe(where, "format", repr(SPECS_FORMAT), repr(got),
                                   "this file was not written by sparsekit_fx.save_specs."))
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version != SPECS_VERSION:
        hint = ("it was written by a newer sparsekit_fx; upgrade" if isinstance(version, int) and
                version > SPECS_VERSION else "re-create the specs and save them with this version")
        raise FormatError(describe(where, "version", f"schema version {SPECS_VERSION}", repr(version), hint + "."))
    if "tree" not in doc:
        raise FormatError(describe(where, "tree", "a spec tree", "no 'tree' entry", "re-save the file."))
    tree = _decode(doc["tree"], "tree")
    try:
        flatten_specs(tree, where)
    except SparseKitError as e:
        raise FormatError(describe(where, "tree", "a non-empty spec tree", str(e), "re-save the file.")) from e
    return tree


def save_specs(specs: Any, path: PathLike) -> None:
    """Mutates (the file system): write a spec tree to ``path`` as JSON."""
    text = specs_to_json(specs)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")


def load_specs(path: PathLike) -> Any:
    """Pure (reads a file): the spec tree saved at ``path`` by :func:`save_specs`.

    Raises:
        FormatError: See :func:`specs_from_json`.
    """
    with open(path, encoding="utf-8") as fh:
        return specs_from_json(fh.read())
