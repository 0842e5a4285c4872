"""Merging behind gates: streaming adapter and model merges, the taint gate, the equivalence check.

``merge_adapter`` folds a LoRA adapter into its base, ``merge_models`` merges whole models and
``merge_config`` runs a mergekit configuration,
both streamed tensor by tensor and only after the taint gate passes; ``verify_merge`` checks a merged
model against what it was made from, and ``require_verified`` is what publishing calls.
"""

from .merging import merge_adapter, merge_config, merge_models
from .taint import load_registry, read_lineage, run_gate
from .verify import require_verified, require_verified_if_merged, verify_merge

__all__ = [
    "load_registry",
    "merge_adapter",
    "merge_config",
    "merge_models",
    "read_lineage",
    "require_verified",
    "require_verified_if_merged",
    "run_gate",
    "verify_merge",
]
