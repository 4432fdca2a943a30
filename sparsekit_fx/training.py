"""Keeping pruned weights at zero while training, in two styles.

**Functional** (``torch.func``): masks are data, so apply them after the
update inside the (compiled) step; nothing here is needed beyond
:func:`~sparsekit_fx.apply_masks`, but :func:`masked_update` spells the
pattern out::

    @torch.compile(fullgraph=True)
    def step(params, masks, x, y):
        g = torch.func.grad(loss_fn)(params, x, y)
        return skf.masked_update(params, g, masks, lambda p, g: p - 0.1 * g)

**nn.Module + torch.optim**: :class:`MaskKeeper` re-applies masks after every
``optimizer.step()`` (through an optimizer step post-hook and
:func:`~sparsekit_fx.write_through_`), and optionally zeroes the gradients of
pruned elements (tensor hooks) so momentum never builds up on them::

    keeper = skf.MaskKeeper(model, masks, optimizer=opt, mask_grads=True)
    for x, y in data:
        opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()   # masks re-applied
    keeper.remove()                                                     # detach the hooks

Re-applying after the step is what keeps zeros under Adam or weight decay,
whose updates move a weight even when its gradient is zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Dict, List, Optional

import torch
from torch import Tensor, nn

from .errors import ParamError, ShapeMismatchError, describe
from .inputs import check_mapping
from .ops import apply_masks
from .write import write_through_

__all__ = ["masked_update", "MaskKeeper"]


def masked_update(params: Any, grads: Any, masks: Any, update: Callable[[Tensor, Tensor], Tensor]
                  ) -> Dict[str, Tensor]:
    """Pure: ``update(p, g)`` for every parameter, then the masks applied to the result.

    Args:
        params: Mapping of parameter name to tensor.
        grads: Mapping with the same keys (e.g. from ``torch.func.grad``).
        masks: ``{name: mask}`` (True = kept); names absent are not masked.
        update: ``(param, grad) -> new param``, e.g. ``lambda p, g: p - lr * g``.

    Returns:
        New params; pruned elements are exactly 0. Inputs are left unchanged.

    Raises:
        ParamError: ``params``/``grads`` are not mappings, or ``grads`` lacks
            a name of ``params``.
        ShapeMismatchError: A gradient's shape differs from its parameter's
            (it would broadcast silently).
    """
    where = "masked_update"
    for arg, m in (("params", params), ("grads", grads)):
        check_mapping(m, where, arg, "pass dicts keyed like dict(model.named_parameters()).")
    for k, p in params.items():
        if k not in grads:
            raise ParamError(describe(where, "grads", f"an entry {k!r} (a name of params)", f"keys {sorted(grads)[:8]}",
                                      "pass the gradients of every parameter, e.g. torch.func.grad(loss)(params)."))
        g = grads[k]
        if isinstance(p, Tensor) and isinstance(g, Tensor) and tuple(g.shape) != tuple(p.shape):
            raise ShapeMismatchError(describe(where, f"grads[{k!r}]", f"shape {tuple(p.shape)} (the parameter's)",
                                              tuple(g.shape), "pass gradients with respect to these params."))
    new = {k: update(p, grads[k]) for k, p in params.items()}
    return apply_masks(new, masks)


class MaskKeeper:
    """Mutates: keeps an ``nn.Module``'s pruned elements at zero during ``torch.optim`` training.

    Args:
        model: The module whose parameters are masked.
        masks: ``{parameter name: mask}`` (True = kept), names as in
            ``model.named_parameters()``.
        optimizer: If given, masks are re-applied after each of its
            ``step()`` calls (a step post-hook). Without it call :meth:`apply_`.
        mask_grads: Also zero the gradients of pruned elements (tensor hooks
            on the parameters), so optimiser state stays clean.
        apply_now: Apply the masks once at construction.

    Masks may be replaced during training with :meth:`set_masks_` (gradual
    pruning); the hooks read the current masks. Use :meth:`remove` (or the
    keeper as a context manager) to detach every hook.

    Raises:
        ParamError: A mask names an unknown parameter.
        ShapeMismatchError: A mask's shape differs from its parameter's.
    """

    def __init__(self, model: nn.Module, masks: Any, *, optimizer: Optional[torch.optim.Optimizer] = None,
                 mask_grads: bool = False, apply_now: bool = True) -> None:
        if not isinstance(model, nn.Module):
            raise ParamError(describe("MaskKeeper", "model", "an nn.Module", type(model).__name__,
                                      "for plain dicts of tensors use apply_masks in the functional style."))
        self.model = model
        self._params = dict(model.named_parameters())
        self._masks: Dict[str, Tensor] = {}
        self.set_masks_(masks, apply=False)
        self._handles: List[Any] = []
        if mask_grads:
            for name, p in self._params.items():
                self._handles.append(p.register_hook(self._grad_hook(name)))
        if optimizer is not None:
            self._handles.append(optimizer.register_step_post_hook(lambda *_: self.apply_()))
        if apply_now:
            self.apply_()

    def _grad_hook(self, name: str) -> Callable[[Tensor], Optional[Tensor]]:
        def hook(grad: Tensor) -> Optional[Tensor]:
            m = self._masks.get(name)
            return None if m is None else torch.where(m, grad, torch.zeros((), dtype=grad.dtype, device=grad.device))
        return hook

    @property
    def masks(self) -> Dict[str, Tensor]:
        """The current masks (a copy of the mapping; the tensors are shared)."""
        return dict(self._masks)

    def set_masks_(self, masks: Any, *, apply: bool = True) -> "MaskKeeper":
        """Mutates: replace the masks (validated first) and, by default, apply them now."""
        if not isinstance(masks, Mapping):
            raise ParamError(describe("MaskKeeper", "masks", "a mapping of parameter name -> bool mask",
                                      type(masks).__name__, "pass the dict returned by masks(...)."))
        new: Dict[str, Tensor] = {}
        for name, m in masks.items():
            if name not in self._params:
                raise ParamError(describe("MaskKeeper", f"masks[{name!r}]", "a name of model.named_parameters()",
                                          f"unknown; model has {sorted(self._params)[:8]}",
                                          "build masks from dict(model.named_parameters())."))
            p = self._params[name]
            if not isinstance(m, Tensor) or tuple(m.shape) != tuple(p.shape):
                got = tuple(m.shape) if isinstance(m, Tensor) else type(m).__name__
                raise ShapeMismatchError(describe("MaskKeeper", f"masks[{name!r}]", f"shape {tuple(p.shape)}", got,
                                                  "pass element masks of the parameter's shape."))
            new[name] = m.detach().to(device=p.device, dtype=torch.bool)
        self._masks = new
        if apply:
            self.apply_()
        return self

    def apply_(self) -> "MaskKeeper":
        """Mutates: zero the pruned elements of the model's parameters in place (keeps identity)."""
        with torch.no_grad():
            write_through_(self.model, apply_masks({n: self._params[n] for n in self._masks}, self._masks))
        return self

    def remove(self) -> None:
        """Mutates: detach every hook; the model keeps its current values."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> "MaskKeeper":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()
