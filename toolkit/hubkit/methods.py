"""The merge methods, in one table (as mergekit's ``merge_methods/registry.py``).

The recipe schema, ``hubkit merge models --method``, the merge itself, the equivalence check
and the merged card all read ``MERGE_METHODS``: adding a method is one ``MergeMethod`` here
(and, for a new kind of check, its branch in ``merge/verify.py``). This module imports no
tensor library, so the CLI can list the methods without loading torch; ``combine`` receives
torch tensors.

``engine`` says what runs a method given as flags (``hubkit merge models --method``): hubkit's
own streaming merge where it exists (linear and task arithmetic: one tensor at a time, a
fraction of mergekit's peak memory, see ``tests/benchmarks/bench_merge.py``), else mergekit. A
mergekit configuration (``--config``) always runs on mergekit. ``recompute`` is the method's
formula from ``hubkit.formulas``, which ``hubkit verify merge`` applies to sampled tensors;
a method without one is checked for structure and finite logits only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from . import formulas

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
    engine: Literal["hubkit", "mergekit"] = "hubkit"
    # formula(settings, base tensor or None, other tensors) -> fp32 tensor, for the recomputation
    recompute: Callable[..., Any] | None = None
    # the flags that set its parameters: --weights (weight), --density, --t
    parameters: tuple[str, ...] = ("weight",)
    random: bool = False  # draws random masks: merged with a seed, which is recorded

    def base_models(self, inputs: Sequence[tuple[str, str]]) -> list[str]:
        """The ids among (id, role) ``inputs`` the card lists as ``base_model``: a fine-tune has
        one base, a merge is made of all its inputs."""
        return [i for i, role in inputs if role == "base" or self.relation == "merge"]


def _linear(weights: Sequence[float], tensors: list[Any]) -> Any:
    settings = formulas.Settings(weights, [], normalize=True, rescale=False)
    return formulas.linear(settings, None, tensors).to(tensors[0].dtype)


def _task_arithmetic(weights: Sequence[float], tensors: list[Any]) -> Any:
    settings = formulas.Settings(weights, [], normalize=False, rescale=False)
    return formulas.task_arithmetic(settings, tensors[0], tensors[1:]).to(tensors[0].dtype)


def _mergekit(
    name: str, formula: str, recompute: Callable[..., Any], *, needs_base: bool = True, **kw: Any
) -> MergeMethod:
    """A model merge mergekit runs (all but passthrough take a base model)."""
    return MergeMethod(
        name,
        formula,
        f"A `{name}` merge of {{n}} models (run by mergekit),",
        inputs="models",
        needs_base=needs_base,
        engine="mergekit",
        recompute=recompute,
        **kw,
    )


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
            recompute=formulas.linear,
        ),
        MergeMethod(
            "task_arithmetic",
            "W_base + sum(w_i * (W_i - W_base)) with a --base; weights default to 1",
            "A `task_arithmetic` merge of {n} models,",
            inputs="models",
            needs_base=True,
            combine=_task_arithmetic,
            recompute=formulas.task_arithmetic,
        ),
        _mergekit(
            "ties",
            "deltas from --base trimmed to their top --density, sign election, disjoint mean",
            formulas.ties,
            parameters=("weight", "density"),
        ),
        _mergekit(
            "dare_ties",
            "deltas randomly dropped to --density and rescaled, then sign election",
            formulas.dare_ties,
            parameters=("weight", "density"),
            random=True,
        ),
        _mergekit(
            "dare_linear",
            "deltas randomly dropped to --density and rescaled, then added (task arithmetic)",
            formulas.dare_linear,
            parameters=("weight", "density"),
            random=True,
        ),
        _mergekit(
            "slerp",
            "spherical interpolation from --base (t=0) to one model (t=1) at --t",
            formulas.slerp,
            parameters=("t",),
        ),
        _mergekit(
            "breadcrumbs",
            "deltas without their largest and smallest entries, then added",
            formulas.breadcrumbs,
            parameters=("weight", "density"),
        ),
        _mergekit(
            "breadcrumbs_ties",
            "deltas without their largest and smallest entries, then sign election",
            formulas.breadcrumbs_ties,
            parameters=("weight", "density"),
        ),
        _mergekit(
            "della",
            "deltas dropped at random by magnitude rank to --density, then sign election",
            formulas.della,
            parameters=("weight", "density"),
            random=True,
        ),
        _mergekit(
            "della_linear",
            "deltas dropped at random by magnitude rank to --density, then added",
            formulas.della_linear,
            parameters=("weight", "density"),
            random=True,
        ),
        _mergekit(
            "model_stock",
            "the base moved toward the models' average (at least two models)",
            formulas.model_stock,
            parameters=(),
        ),
        _mergekit(
            "passthrough",
            "each tensor copied from one model: a mergekit slices configuration (frankenmerge)",
            formulas.passthrough,
            parameters=(),
            needs_base=False,
        ),
    )
}
# What `hubkit merge models --method` and the recipe's merge.method offer.
MODEL_MERGES = tuple(name for name, m in MERGE_METHODS.items() if m.inputs == "models")
