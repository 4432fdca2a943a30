"""Reading a spec's tensors out of params-like mappings, with validation.

``params``, ``values`` and ``conditioners`` are mappings keyed by parameter
name, exactly like ``dict(model.named_parameters())``. The checks here use
only static facts (names, shapes, dtypes, devices), so they run at trace time
under ``torch.compile`` and on logical shapes under ``vmap``; they never read
tensor values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .errors import ParamError, ShapeMismatchError, describe
from .specs import View

__all__ = ["view_sources", "check_param", "acc_dtype"]


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Pure: the dtype statistics accumulate in: float64 stays, all else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_mapping(mapping: Any, where: str, arg: str, fix: Optional[str] = None) -> Mapping:
    """Pure: ``mapping`` itself, after checking it is a mapping (of names to tensors).

    Raises:
        ParamError: It is not; ``fix`` replaces the default advice.
    """
    if not isinstance(mapping, Mapping):
        raise ParamError(
            describe(where, arg, "a mapping of parameter name -> Tensor", type(mapping).__name__,
                     fix or f"pass {arg} as a dict, e.g. dict(model.named_parameters()).")
        )
    return mapping


def check_param(mapping: Any, name: str, shape: Optional[Tuple[int, ...]], where: str, arg: str,
                named_by: str = "the spec") -> Tensor:
    """Pure: fetch ``mapping[name]`` and check it is a floating tensor of ``shape``.

    ``shape=None`` skips the shape check; ``named_by`` says where the name
    came from, for the message.

    Raises:
        ParamError: ``mapping`` is not a mapping, lacks ``name``, or holds a
            non-tensor or a non-floating tensor.
        ShapeMismatchError: The tensor's shape is not ``shape``.
    """
    check_mapping(mapping, where, arg)
    if name not in mapping:
        known = sorted(mapping)[:8]
        raise ParamError(
            describe(where, arg, f"an entry {name!r} (named by {named_by})", f"keys {known}",
                     f"add {name!r} to {arg}, or use the names of your mapping in {named_by}.")
        )
    t = mapping[name]
    if not isinstance(t, Tensor):
        raise ParamError(
            describe(where, f"{arg}[{name!r}]", "a torch.Tensor", type(t).__name__, "pass tensors only.")
        )
    if not t.is_floating_point():
        raise ParamError(
            describe(where, f"{arg}[{name!r}]", "a floating-point tensor", t.dtype,
                     "sparsify float16/bfloat16/float32/float64 tensors; cast integer or bool tensors first."
                     if arg == "params" else f"pass {arg} as floating-point tensors, e.g. t.float().")
        )
    if shape is not None and tuple(t.shape) != tuple(shape):
        raise ShapeMismatchError(
            describe(where, f"{arg}[{name!r}]", f"shape {tuple(shape)} (the spec's param_shape)", tuple(t.shape),
                     "rebuild the spec from the current tensor, e.g. with View.of(name, tensor)." if arg == "params"
                     else f"pass {arg} shaped like the parameters they stand for.")
        )
    return t


def view_sources(
    params: Any,
    views: Sequence[View],
    where: str,
    *,
    values: Optional[Any] = None,
    values_arg: str = "values",
) -> List[Tensor]:
    """Pure: the full tensors behind ``views``, from ``values`` if given else ``params``.

    Every view's parameter is also checked in ``params`` (when ``values`` is
    given, ``params`` may be ``None``), ``values`` must sit on the parameters'
    devices, and all tensors of one spec must share a device.

    Raises:
        ParamError: A name is missing, a tensor is not floating, or devices differ.
        ShapeMismatchError: A tensor's shape disagrees with its view.
    """
    out: List[Tensor] = []
    device = None
    for v in views:
        if params is not None:
            src = check_param(params, v.param, v.param_shape, where, "params")
        if values is not None:
            val = check_param(values, v.param, v.param_shape, where, values_arg)
            if params is not None and val.device != src.device:
                raise ParamError(
                    describe(where, f"{values_arg}[{v.param!r}]", f"a tensor on {src.device} (the parameter's device)",
                             val.device, f"move {values_arg} to the parameters' device.")
                )
            src = val
        if device is None:
            device = src.device
        elif src.device != device:
            raise ParamError(
                describe(where, "params", f"all tensors of one spec on one device ({device})",
                         f"{v.param!r} on {src.device}", "move the coupled parameters to the same device.")
            )
        out.append(src)
    return out
