"""CLI flags made from the tables and the recipe models, not restated: the stage names of
``--force``, and the recipe fields' descriptions, defaults and choices."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from hubkit.cli import cli, data_check
from hubkit.pipeline import STAGES
from hubkit.recipe import CATEGORIES, DecontamSection, EvalSection


def _help(*command: str) -> str:
    return " ".join(CliRunner().invoke(cli, [*command, "--help"]).output.split())


def test_force_offers_the_pipeline_stages_and_refuses_another() -> None:
    assert f"--force [{'|'.join(STAGES)}]" in _help("train-and-push")
    result = CliRunner().invoke(cli, ["train-and-push", "missing.yaml", "--force", "nope"])
    assert result.exit_code == 2 and "'nope' is not a stage (data-build, data-check," in result.output


def test_recipe_flags_carry_the_fields_description_default_and_choices() -> None:
    check = _help("data", "check")
    threshold = DecontamSection.model_fields["threshold"].description
    assert f"With --platypus: {threshold[0].lower()}{threshold[1:]} [default: 0.8, or the recipe's]" in check
    keep = next(p for p in data_check.params if p.name == "keep")
    assert tuple(keep.type.choices) == CATEGORIES
    assert f"{EvalSection.model_fields['batch_size'].description} [default: auto]" in _help("eval")


def test_the_cli_loads_without_the_recipe_models() -> None:
    """Every command's start skips pydantic and yaml: the recipe flags read the models only when
    their help is shown or a value parsed."""
    probe = "import sys, hubkit.cli; print(sorted(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "hubkit.cli" in eval(loaded) and not {"pydantic", "yaml", "hubkit.recipe"} & set(eval(loaded))
