"""sparsekit_fx: structured sparsity as pure, compilable functions of PyTorch params.

Specs (:class:`View`, :class:`BlockSpec`, :class:`BlockCoupling`,
:class:`ScopeSpec`, :class:`ScopeCoupling`) describe a layout; pure functions
compute block statistics, masks, hard- and soft-thresholded parameters and a
functional Adam + prox step from a mapping of parameter name to tensor;
:func:`write_through_` copies results back into a model. This module only
re-exports the public API.
"""

from .adam import ProxAdamState, adam_conditioners, prox_adam_init, prox_adam_step
from .errors import (
    ArgumentError,
    CouplingError,
    ParamError,
    ShapeMismatchError,
    SparseKitError,
    SpecError,
)
from .ops import apply_masks, block_masks, hard_threshold, masks
from .prox_ops import soft_threshold, soft_threshold_views
from .select import kth_largest, kth_mid, sparsity_to_nnz, threshold_mask, topk_mask
from .specs import BlockCoupling, BlockSpec, ScopeCoupling, ScopeSpec, View
from .stats import block_max, block_min, block_norms, block_reduce, scope_scores
from .write import write_through_

__version__ = "0.1.0"

__all__ = [
    # specs
    "View",
    "BlockSpec",
    "BlockCoupling",
    "ScopeSpec",
    "ScopeCoupling",
    # statistics
    "block_norms",
    "block_min",
    "block_max",
    "block_reduce",
    "scope_scores",
    # selection
    "kth_largest",
    "kth_mid",
    "topk_mask",
    "threshold_mask",
    "sparsity_to_nnz",
    # ops
    "block_masks",
    "masks",
    "hard_threshold",
    "apply_masks",
    # proximal operators and the functional Adam + prox step
    "soft_threshold",
    "soft_threshold_views",
    "prox_adam_init",
    "prox_adam_step",
    "ProxAdamState",
    "adam_conditioners",
    # write-back
    "write_through_",
    # errors
    "SparseKitError",
    "SpecError",
    "ShapeMismatchError",
    "CouplingError",
    "ParamError",
    "ArgumentError",
]
