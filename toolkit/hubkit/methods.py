"""The merge methods, in one table (as mergekit's ``merge_methods/registry.py``).

The recipe schema, ``hubkit merge models --method``, the merge itself, the equivalence check
and the merged card all read ``MERGE_METHODS``: adding a method is one ``MergeMethod`` here
(and, for a new kind of check, its branch in ``merge/verify.py``). This module imports no
tensor library, so the CLI can list the methods without loading torch; ``combine`` receives
torch tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

# combine(weights, [reference tensor, *other tensors]) -> the merged tensor, in the reference's dtype
Combine = Callable[[Sequence[float], list[Any]], Any]


@dataclass(frozen=True)
class MergeMethod:
    """One way hubkit makes a merged model, and what every stage needs to know about it."""

    name: str
    formula: str  # for --help
    intro: str  # the merged card's first line; {n} is the number of inputs
    # "adapter": a LoRA adapter folded into its base; "models": whole models combined by ``combine``
    inputs: Literal["adapter", "models"]
    needs_base: bool = False  # True: `--base` is required (tensors[0] is the base); False: refused
    default_weight: float = 1.0
    weights_may_sum_to_zero: bool = True
    combine: Combine | None = None
    # which equivalence check applies: logits against base + adapter, or structure and finite logits
    verification: Literal["adapter", "structure"] = "structure"
    # the card's base_model_relation, tags and which inputs are its base_model
    relation: Literal["finetune", "merge"] = "merge"
    tags: tuple[str, ...] = ("hubkit", "merge")

    def base_models(self, inputs: Sequence[tuple[str, str]]) -> list[str]:
        """The ids among (id, role) ``inputs`` the card lists as ``base_model``: a fine-tune has
        one base, a merge is made of all its inputs."""
        return [i for i, role in inputs if role == "base" or self.relation == "merge"]


def _linear(weights: Sequence[float], tensors: list[Any]) -> Any:
    total = sum(weights)
    merged = sum((w / total) * t.float() for w, t in zip(weights, tensors, strict=True))
    return merged.to(tensors[0].dtype)


def _task_arithmetic(weights: Sequence[float], tensors: list[Any]) -> Any:
    start = tensors[0].float()
    merged = start + sum(w * (t.float() - start) for w, t in zip(weights, tensors[1:], strict=True))
    return merged.to(tensors[0].dtype)


MERGE_METHODS: dict[str, MergeMethod] = {
    m.name: m
    for m in (
        MergeMethod(
            "lora",
            "W + B·A·alpha/r",
            "A LoRA adapter folded into its base model (`W + B·A·alpha/r`, computed in fp32),",
            inputs="adapter",
            needs_base=True,
            verification="adapter",
            relation="finetune",
            tags=("hubkit", "peft", "lora"),
        ),
        MergeMethod(
            "linear",
            "sum(w_i * W_i) / sum(w_i), the Stable-Platypus2 kind of merge; weights default to equal",
            "A `linear` merge of {n} models,",
            inputs="models",
            weights_may_sum_to_zero=False,
            combine=_linear,
        ),
        MergeMethod(
            "task_arithmetic",
            "W_base + sum(w_i * (W_i - W_base)) with a --base; weights default to 1",
            "A `task_arithmetic` merge of {n} models,",
            inputs="models",
            needs_base=True,
            combine=_task_arithmetic,
        ),
    )
}
# What `hubkit merge models --method` and the recipe's merge.method offer.
MODEL_MERGES = tuple(name for name, m in MERGE_METHODS.items() if m.inputs == "models")
