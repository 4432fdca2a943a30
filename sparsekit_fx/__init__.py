"""sparsekit_fx: structured sparsity as pure, compilable functions of PyTorch params.

Specs (:class:`View`, :class:`BlockSpec`, :class:`BlockCoupling`,
:class:`ScopeSpec`, :class:`ScopeCoupling`) describe a layout; pure functions
compute block statistics, masks, hard- and soft-thresholded parameters and a
functional Adam + prox step from a mapping of parameter name to tensor;
:func:`write_through_` copies results back into a model. This module only
re-exports the public API.
"""

from .adam import ProxAdamState, adam_conditioners, prox_adam_init, prox_adam_step
from .builder import SpecBuilder
from .checks import check_finite
from .compile import compile_step
from .engine import batching
from .errors import (
    ArgumentError,
    BuilderError,
    CouplingError,
    DuplicateNameError,
    FormatError,
    NonFiniteError,
    ParamError,
    RuleError,
    ShapeMismatchError,
    SparseKitError,
    SpecError,
    UnknownNameError,
)
from .maskio import (
    expand_block_masks,
    masks_from_state_dict,
    masks_to_state_dict,
    merge_masks,
    pack_bits,
    unpack_bits,
)
from .ops import apply_masks, block_masks, hard_threshold, masks
from .pruners import (
    global_unstructured,
    l1_unstructured,
    ln_structured,
    n_m_spec,
    random_unstructured,
    weight_norm_masks,
    weight_norm_spec,
)
from .rules import BlockRule, CoupleRule, Part, channel_rule, head_rule, specs_from_module
from .schedules import (
    Schedule,
    constant_schedule,
    cubic_schedule,
    one_shot_schedule,
    polynomial_schedule,
)
from .prox_ops import soft_threshold, soft_threshold_views
from .select import kth_largest, kth_mid, sparsity_to_nnz, threshold_mask, topk_mask
from .specs import BlockCoupling, BlockSpec, ScopeCoupling, ScopeSpec, View
from .stats import block_max, block_mean, block_min, block_norms, block_reduce, scope_scores
from .serialize import load_specs, save_specs, specs_from_json, specs_to_json
from .training import MaskKeeper, masked_update
from .viz import print_sparsity_table, sparsity_table
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
    "block_mean",
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
    # peer parity (WeightNormSparsifier, torch.nn.utils.prune, N:M)
    "n_m_spec",
    "weight_norm_spec",
    "weight_norm_masks",
    "l1_unstructured",
    "random_unstructured",
    "ln_structured",
    "global_unstructured",
    # proximal operators and the functional Adam + prox step
    "soft_threshold",
    "soft_threshold_views",
    "prox_adam_init",
    "prox_adam_step",
    "ProxAdamState",
    "adam_conditioners",
    # write-back
    "write_through_",
    # eager value checks (the NaN/Inf policy)
    "check_finite",
    # compiled steps
    "compile_step",
    "batching",
    # masks: merging, expanding, compact storage
    "merge_masks",
    "expand_block_masks",
    "masks_to_state_dict",
    "masks_from_state_dict",
    "pack_bits",
    "unpack_bits",
    # specs from a model, and the builder
    "specs_from_module",
    "BlockRule",
    "CoupleRule",
    "Part",
    "channel_rule",
    "head_rule",
    "SpecBuilder",
    # spec trees to and from JSON
    "specs_to_json",
    "specs_from_json",
    "save_specs",
    "load_specs",
    # schedules
    "Schedule",
    "constant_schedule",
    "one_shot_schedule",
    "polynomial_schedule",
    "cubic_schedule",
    # training
    "masked_update",
    "MaskKeeper",
    # reporting (draw_layout lives in sparsekit_fx.viz: it needs matplotlib)
    "sparsity_table",
    "print_sparsity_table",
    # errors
    "SparseKitError",
    "SpecError",
    "ShapeMismatchError",
    "CouplingError",
    "ParamError",
    "ArgumentError",
    "RuleError",
    "BuilderError",
    "UnknownNameError",
    "DuplicateNameError",
    "FormatError",
    "NonFiniteError",
]
