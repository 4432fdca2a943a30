"""Write-through: the one place where sparsekit_fx mutates tensors.

Pure ops return new tensors; :func:`write_through_` copies them into a
model's parameters (or any mutable mapping of tensors) in place, keeping each
Parameter's identity and storage so optimisers, hooks and ``data_ptr()`` stay
valid. It is atomic: every entry is validated before anything is written, and
if a copy still fails part-way the entries already written are restored.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any, Dict, List, Tuple

import torch
from torch import Tensor, nn

from .errors import ParamError, ShapeMismatchError, describe

__all__ = ["write_through_"]

_WHERE = "write_through_"


def _targets(target: Any) -> Dict[str, Tensor]:
    if isinstance(target, nn.Module):
        named: Dict[str, Tensor] = dict(target.named_parameters(remove_duplicate=False))
        named.update(dict(target.named_buffers(remove_duplicate=False)))
        return named
    if isinstance(target, MutableMapping):
        return dict(target)
    raise ParamError(
        describe(_WHERE, "target", "an nn.Module or a mutable mapping of name -> Tensor", type(target).__name__,
                 "pass the model itself, or the dict you built params from.")
    )


def _plan(target: Any, new_params: Any) -> List[Tuple[str, Tensor, Tensor]]:
    """Validate every entry; return the (name, destination, source) pairs to copy."""
    if not isinstance(new_params, Mapping):
        raise ParamError(
            describe(_WHERE, "new_params", "a mapping of name -> Tensor", type(new_params).__name__,
                     "pass the dict returned by a pure op such as hard_threshold.")
        )
    dsts = _targets(target)
    plan = []
    for name, src in new_params.items():
        if name not in dsts:
            known = sorted(dsts)[:8]
            raise ParamError(
                describe(_WHERE, f"new_params[{name!r}]", "a name of the target's parameters or buffers",
                         f"unknown name; target has {known}{'...' if len(dsts) > 8 else ''}",
                         "use the names of model.named_parameters(), or drop the entry.")
            )
        dst = dsts[name]
        if not isinstance(src, Tensor):
            raise ParamError(describe(_WHERE, f"new_params[{name!r}]", "a Tensor", type(src).__name__,
                                      "pass tensors only."))
        if src is dst:
            continue  # untouched entry passed through by a pure op: nothing to write
        if tuple(src.shape) != tuple(dst.shape):
            raise ShapeMismatchError(
                describe(_WHERE, f"new_params[{name!r}]", f"shape {tuple(dst.shape)} (the target's)",
                         tuple(src.shape), "write back tensors computed from this target's params.")
            )
        if src.dtype != dst.dtype:
            raise ParamError(
                describe(_WHERE, f"new_params[{name!r}]", f"dtype {dst.dtype} (the target's)", src.dtype,
                         f"cast first: new.to({dst.dtype}).")
            )
        if src.device != dst.device:
            raise ParamError(
                describe(_WHERE, f"new_params[{name!r}]", f"device {dst.device} (the target's)", src.device,
                         f"move first: new.to('{dst.device}').")
            )
        plan.append((name, dst, src))
    return plan


def _storage(t: Tensor) -> int:
    return t.untyped_storage().data_ptr()


def write_through_(target: Any, new_params: Any, *, atomic: bool = True) -> Any:
    """Mutates: copy ``new_params`` into ``target``'s tensors in place.

    Args:
        target: An ``nn.Module`` (names as in ``named_parameters()`` /
            ``named_buffers()``) or a mutable mapping of name -> Tensor.
        new_params: Mapping of name -> new values, e.g. the output of
            :func:`~sparsekit_fx.hard_threshold`. Entries that *are* the
            target's tensor (untouched entries of a pure op) are skipped.
        atomic: If True (default), snapshot the tensors about to be written so
            a failure during copying restores them. ``False`` skips the
            snapshot (one copy of the written tensors less) and keeps only the
            validate-everything-first guarantee.

    Returns:
        ``target``, for chaining.

    Raises:
        ParamError: An entry is unknown, not a tensor, or of the wrong dtype or
            device. Nothing is written.
        ShapeMismatchError: An entry has the wrong shape. Nothing is written.
    """
    plan = _plan(target, new_params)
    if not plan:
        return target
    dst_storages = {_storage(d) for _, d, _ in plan}
    with torch.no_grad():
        # A source that aliases a destination (a swap, or a view of the target)
        # could be overwritten before it is read: copy such sources first.
        srcs = [s.detach().clone() if _storage(s) in dst_storages else s.detach() for _, _, s in plan]
        dsts = [d for _, d, _ in plan]
        backups = [d.detach().clone() for d in dsts] if atomic else None
        try:
            for d, s in zip(dsts, srcs):
                d.copy_(s)
        except BaseException:
            if backups is not None:
                for d, b in zip(dsts, backups):
                    d.copy_(b)
            raise
    return target
