"""The merge-method table is what the recipe, the CLI, the merge and the card read."""

from __future__ import annotations

import pytest
import torch

from hubkit.cli import merge_models_command
from hubkit.errors import HubkitError
from hubkit.methods import MERGE_METHODS, MODEL_MERGES
from hubkit.recipe import recipe_from_dict


def test_recipe_and_cli_offer_the_model_merges_of_the_table() -> None:
    assert MODEL_MERGES == tuple(name for name, m in MERGE_METHODS.items() if m.inputs == "models")
    assert {"linear", "task_arithmetic", "ties", "dare_ties", "slerp"} <= set(MODEL_MERGES)
    for name in MODEL_MERGES:
        assert recipe_from_dict({"name": "r", "model": {"name_or_path": "x"}, "merge": {"method": name}})
    method = next(p for p in merge_models_command.params if p.name == "method")
    assert tuple(method.type.choices) == MODEL_MERGES
    with pytest.raises(
        HubkitError, match=r"merge\.method: unknown merge method 'frankenmerge' \(known: linear, "
    ):
        recipe_from_dict({"name": "r", "model": {"name_or_path": "x"}, "merge": {"method": "frankenmerge"}})


def test_engines_and_formulas() -> None:
    """hubkit streams what it measured cheaper; mergekit runs the rest; each formula is recorded."""
    engines = {name: MERGE_METHODS[name].engine for name in MODEL_MERGES}
    assert engines["linear"] == engines["task_arithmetic"] == "hubkit"
    assert {engines[m] for m in ("ties", "dare_ties", "dare_linear", "slerp", "della")} == {"mergekit"}
    assert [m for m in MODEL_MERGES if MERGE_METHODS[m].random] == [
        "dare_ties",
        "dare_linear",
        "della",
        "della_linear",
    ]
    assert all(MERGE_METHODS[m].recompute for m in MODEL_MERGES)  # every model merge is recomputed


def test_combine_keeps_the_reference_dtype() -> None:
    a = torch.tensor([1.0, 2.0], dtype=torch.bfloat16)
    b = torch.tensor([3.0, 6.0], dtype=torch.bfloat16)
    linear = MERGE_METHODS["linear"].combine([1.0, 3.0], [a, b])
    assert linear.dtype == torch.bfloat16 and linear.tolist() == [2.5, 5.0]
    arithmetic = MERGE_METHODS["task_arithmetic"].combine([0.5], [a, b])
    assert arithmetic.tolist() == [2.0, 4.0]


def test_card_base_models_follow_the_relation() -> None:
    inputs = [("org/base", "base"), ("org/adapter", "adapter")]
    assert MERGE_METHODS["lora"].base_models(inputs) == ["org/base"]
    assert MERGE_METHODS["linear"].base_models([("a", "model"), ("b", "model")]) == ["a", "b"]
