"""Cards written from artifacts: golden output, Hub metadata round trips, validate-yaml on the
local Hub, and a one-line error for every field a card needs but an artifact lacks.

The fixture artifacts under tests/fixtures/cards/ hold the files each stage writes (with a
fixed data.parquet, so the certificate's sha256 is stable). Regenerate the goldens after an
intended change with ``HUBKIT_UPDATE_GOLDEN=1 pytest tests/test_cards.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import DatasetCard, ModelCard, metadata_load
from huggingface_hub.repocard_data import model_index_to_eval_results

from hubkit.cards import LOSS_PLOT, card_context, read_eval_results, write_card
from hubkit.errors import HubkitError

FIXTURES = Path(__file__).parent / "fixtures" / "cards"
GOLDEN = Path(__file__).parent / "golden"
EVAL = FIXTURES / "lm_eval_results.json"
TEMPLATES = Path(__file__).resolve().parents[1] / "cards"
# What the fixture's lm-eval results file says, in percent (lm-eval writes fractions).
SCORES = {"ai2_arc": 61.26, "hellaswag": 82.55, "cais/mmlu": 56.7, "truthful_qa": 44.86}


def _artifact(tmp_path: Path, kind: str) -> Path:
    return Path(shutil.copytree(FIXTURES / kind, tmp_path / kind))


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _delete(keys: tuple[Any, ...]):
    def change(data: Any) -> None:
        for key in keys[:-1]:
            data = data[key]
        del data[keys[-1]]

    return change


# Each card from fixed artifacts; the adapter card with eval results, the merged card without.
GOLDEN_CASES = {"dataset": None, "adapter": EVAL, "merged": None}


@pytest.mark.parametrize("kind", list(GOLDEN_CASES))
def test_card_matches_golden(kind: str, tmp_path: Path) -> None:
    readme = write_card(kind, _artifact(tmp_path, kind), GOLDEN_CASES[kind])
    golden = GOLDEN / f"{kind}_card.md"
    if os.environ.get("HUBKIT_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        shutil.copyfile(readme, golden)
    assert readme.read_text(encoding="utf-8") == golden.read_text(encoding="utf-8")
    assert "None" not in readme.read_text(encoding="utf-8")  # no blank rendered as Python's None


def test_adapter_card_shows_its_loss_plot(tmp_path: Path) -> None:
    folder = _artifact(tmp_path, "adapter")
    readme = write_card("adapter", folder)
    png = (folder / LOSS_PLOT).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (640, 360)  # IHDR width, height
    assert f"]({LOSS_PLOT})" in readme.read_text()


def test_adapter_metadata_round_trip(tmp_path: Path) -> None:
    readme = write_card("adapter", _artifact(tmp_path, "adapter"), EVAL)
    data = ModelCard.load(readme).data
    assert data.license == "llama2" and data.language == ["en"]
    assert data.tags[:3] == ["hubkit", "peft", "lora"]
    assert data.base_model == "meta-llama/Llama-2-13b-hf" and data["base_model_relation"] == "adapter"
    assert data.datasets == ["your-org/platypus-math-clean", "openai/gsm8k"]
    assert (data.library_name, data.pipeline_tag) == ("peft", "text-generation")

    meta = metadata_load(readme)
    assert meta == data.to_dict()
    name, results = model_index_to_eval_results(meta["model-index"])
    assert name == "Platypus2-13B-adapter"
    assert {r.dataset_type: r.metric_value for r in results} == SCORES
    shots = {r.dataset_type: r.dataset_args["num_few_shot"] for r in results}
    assert shots == {"ai2_arc": 25, "hellaswag": 10, "cais/mmlu": 5, "truthful_qa": 0}
    assert {r.dataset_type: r.metric_type for r in results}["truthful_qa"] == "mc2"


def test_adapter_card_lists_the_data_trained_on_not_the_recipes(tmp_path: Path) -> None:
    # `hubkit train --dataset bob/other-clean`: the recipe still names its own data
    folder = _artifact(tmp_path, "adapter")

    def trained_elsewhere(data: dict) -> None:
        data["dataset"]["hub_id"] = "bob/other-clean"
        data["datasets"] = ["bob/other-clean", "carol/physics"]

    _edit(folder / "provenance.json", trained_elsewhere)
    readme = write_card("adapter", folder)
    assert ModelCard.load(readme).data.datasets == ["bob/other-clean", "carol/physics"]


def test_merged_metadata_round_trip_and_override_on_top(tmp_path: Path) -> None:
    readme = write_card("merged", _artifact(tmp_path, "merged"), EVAL)
    data = ModelCard.load(readme).data
    assert data.base_model == "meta-llama/Llama-2-13b-hf" and data["base_model_relation"] == "finetune"
    assert data.library_name == "transformers" and data.tags[:3] == ["hubkit", "peft", "lora"]
    assert {r.dataset_type: r.metric_value for r in data.eval_results} == SCORES
    body = readme.read_text().split("\n---\n", 1)[1]
    assert body.index("--allow-unverified meta-llama/Llama-2-13b-hf") < body.index("\n# Platypus2-13B")


def test_dataset_metadata_round_trip(tmp_path: Path) -> None:
    readme = write_card("dataset", _artifact(tmp_path, "dataset"))
    data = DatasetCard.load(readme).data
    assert data.license == "mit" and data.language == ["en"] and "hubkit" in data.tags
    assert data.size_categories == ["n<1K"]
    assert data["configs"] == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "data.parquet"}]}
    ]
    assert metadata_load(readme) == data.to_dict()


@pytest.mark.parametrize("kind", list(GOLDEN_CASES))
def test_local_hub_validates_the_metadata(kind: str, tmp_path: Path, local_hub) -> None:
    readme = write_card(kind, _artifact(tmp_path, kind), None if kind == "dataset" else EVAL)
    card_class = DatasetCard if kind == "dataset" else ModelCard
    card_class.load(readme).validate()  # POST /api/validate-yaml; raises ValueError when refused
    broken = card_class(readme.read_text().replace("license: ", "license:\n- ", 1))
    with pytest.raises(ValueError, match="license"):
        broken.validate()


MISSING = [
    ("dataset", "manifest.json", ("sources", 1, "license"), "sources[1].license"),
    ("dataset", "manifest.json", ("dedup", "removed_near"), "dedup.removed_near"),
    ("dataset", "leak_report.json", ("summary", "gsm8k", "gray_area"), "summary.gsm8k.gray_area"),
    ("dataset", "leak_certificate.json", ("embedding_model",), "embedding_model"),
    ("adapter", "metrics.json", ("trainable_parameters", "percent"), "trainable_parameters.percent"),
    ("adapter", "metrics.json", ("wall_time_s",), "wall_time_s"),
    ("adapter", "provenance.json", ("recipe", "hub", "license"), "recipe.hub.license"),
    ("adapter", "provenance.json", ("leak_certificate", "threshold"), "leak_certificate.threshold"),
    ("merged", "verification.json", ("passed",), "passed"),
    ("merged", "provenance.json", ("taint_gate", "inputs", 1, "verdict"), "taint_gate.inputs[1].verdict"),
    (
        "merged",
        "provenance.json",
        ("adapter_provenance", "recipe", "hub", "merged_repo"),
        "adapter_provenance.recipe.hub.merged_repo",
    ),
]


@pytest.mark.parametrize(("kind", "file", "keys", "field"), MISSING, ids=[f"{m[0]}-{m[3]}" for m in MISSING])
def test_missing_field_is_a_one_line_error(
    kind: str, file: str, keys: tuple, field: str, tmp_path: Path
) -> None:
    folder = _artifact(tmp_path, kind)
    path = folder / file
    _edit(path, _delete(keys))
    with pytest.raises(HubkitError) as err:
        write_card(kind, folder)
    assert str(err.value) == f"{path}: missing field '{field}' needed by the {kind} card"
    assert not (folder / "README.md").exists()


def test_cli_reports_a_missing_field_in_one_line(tmp_path: Path) -> None:
    folder = _artifact(tmp_path, "adapter")
    _edit(folder / "metrics.json", _delete(("hardware", "gpus")))
    run = subprocess.run(
        [sys.executable, "-m", "hubkit", "card", "adapter", str(folder)], capture_output=True, text=True
    )
    assert run.returncode == 1
    assert run.stderr == (
        f"Error: {folder / 'metrics.json'}: missing field 'hardware.gpus' needed by the adapter card\n"
    )


def test_cli_writes_the_card(tmp_path: Path) -> None:
    folder = _artifact(tmp_path, "merged")
    run = subprocess.run(
        [sys.executable, "-m", "hubkit", "card", "merged", str(folder), "--eval-results", str(EVAL)]
        + ["--compare", f"base={EVAL}"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"Wrote {folder / 'README.md'}\n"
    assert "model-index" in metadata_load(folder / "README.md")
    assert "| Benchmark | Metric | base | merged |" in (folder / "README.md").read_text()


def test_unchecked_data_needs_the_override_and_shows_it(tmp_path: Path) -> None:
    folder = _artifact(tmp_path, "adapter")
    _edit(folder / "provenance.json", lambda p: p.update(leak_certificate=None))
    with pytest.raises(HubkitError, match="missing field 'leak_certificate' needed by the adapter card"):
        write_card("adapter", folder)
    _edit(folder / "provenance.json", lambda p: p.update(allow_unchecked_data=True))
    body = write_card("adapter", folder).read_text().split("\n---\n", 1)[1]
    assert body.index("--allow-unchecked-data") < body.index("\n# Platypus2-13B-adapter")
    assert "None: the training data was not checked" in body


def test_dataset_of_mixed_licenses_is_other(tmp_path: Path) -> None:
    folder = _artifact(tmp_path, "dataset")
    _edit(folder / "manifest.json", lambda m: m["sources"][1].update(license="apache-2.0"))
    context = card_context("dataset", folder)
    assert context.metadata().license == "other"
    assert [s.license for s in context.sources] == ["mit", "apache-2.0"]


def test_dataset_certificate_must_match_the_data(tmp_path: Path) -> None:
    folder = _artifact(tmp_path, "dataset")
    _edit(folder / "leak_certificate.json", lambda c: c.update(dataset_sha256="0" * 64))
    with pytest.raises(HubkitError, match="certificate does not match data.parquet"):
        write_card("dataset", folder)


def test_model_merge_metadata(tmp_path: Path) -> None:
    folder = _artifact(tmp_path, "merged")

    def as_model_merge(p: dict) -> None:
        p["method"] = "linear"
        p["recipe"] = p.pop("adapter_provenance")["recipe"]
        p["inputs"][1]["id"] = p["taint_gate"]["inputs"][1]["id"] = "your-org/Platypus2-13B-instruct"
        for record in p["inputs"]:
            record |= {"role": "model", "weight": 0.5}

    _edit(folder / "provenance.json", as_model_merge)
    data = card_context("merged", folder).metadata()
    assert data.base_model == ["meta-llama/Llama-2-13b-hf", "your-org/Platypus2-13B-instruct"]
    assert data["base_model_relation"] == "merge" and "merge" in data.tags
    body = write_card("merged", folder).read_text()
    assert "A `linear` merge of 2 models," in body and body.count("| weight | 0.5 |") == 2

    _edit(folder / "provenance.json", lambda p: p.pop("recipe"))
    with pytest.raises(HubkitError, match="missing field 'recipe' needed by the merged card"):
        card_context("merged", folder)


def test_eval_results_in_the_older_harness_format(tmp_path: Path) -> None:
    """lm-eval 0.3 (leaderboard v1 era): plain metric keys, MMLU as 57 hendrycksTest-* tasks."""
    path = tmp_path / "results.json"
    results = {
        "arc_challenge": {"acc": 0.58, "acc_norm": 0.6126},
        "hendrycksTest-abstract_algebra": {"acc": 0.31, "acc_norm": 0.31},
        "hendrycksTest-anatomy": {"acc": 0.52, "acc_norm": 0.52},
        "truthfulqa_mc": {"mc1": 0.30, "mc2": 0.4486},
    }
    path.write_text(json.dumps({"results": results, "config": {"model": "hf-causal"}}))
    scores = {s.task.key: s.value for s in read_eval_results(path)}
    assert scores == {"arc": 61.26, "mmlu": 41.5, "truthfulqa": 44.86}


def test_eval_results_refuse_other_settings(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    doc = json.loads(EVAL.read_text())
    doc["configs"]["hellaswag"]["num_fewshot"] = 0
    path.write_text(json.dumps(doc))
    with pytest.raises(
        HubkitError, match=r"hellaswag was run 0-shot; the card reports HellaSwag \(10-Shot\)"
    ):
        read_eval_results(path)
    path.write_text(json.dumps({"results": {"arc_challenge": {"acc,none": 0.5}}}))
    with pytest.raises(
        HubkitError, match=r"results.arc_challenge has no 'acc_norm,none' or 'acc_norm' score"
    ):
        read_eval_results(path)
    path.write_text(json.dumps({"results": {"lambada_openai": {"acc,none": 0.2}}}))
    with pytest.raises(HubkitError, match="no ARC, HellaSwag, MMLU, TruthfulQA, Winogrande or GSM8K results"):
        read_eval_results(path)


def test_dataset_card_takes_no_eval_results(tmp_path: Path) -> None:
    with pytest.raises(HubkitError, match="a dataset card has no evaluation results"):
        write_card("dataset", _artifact(tmp_path, "dataset"), EVAL)


def test_templates_ship_inside_the_package() -> None:
    shipped = files("hubkit").joinpath("card_templates")
    for template in sorted(TEMPLATES.glob("*.md")):
        assert shipped.joinpath(template.name).read_bytes() == template.read_bytes()
    assert {p.name for p in TEMPLATES.glob("*.md")} >= {
        "dataset_card.md",
        "adapter_card.md",
        "merged_card.md",
        "limitations.md",
    }


def test_merged_card_shows_base_adapter_and_merged_side_by_side(tmp_path: Path) -> None:
    base = tmp_path / "base.json"  # the base scored lower on ARC, and not on HellaSwag at all
    doc = json.loads(EVAL.read_text())
    doc["results"]["arc_challenge"]["acc_norm,none"] = 0.5
    del doc["results"]["hellaswag"]
    base.write_text(json.dumps(doc))
    compare = {"base": base, "base + adapter": EVAL}
    readme = write_card("merged", _artifact(tmp_path, "merged"), EVAL, compare)
    text = readme.read_text()
    assert "| Benchmark | Metric | base | base + adapter | merged |" in text
    assert "| AI2 Reasoning Challenge (25-Shot) | normalized accuracy | 50.00 | 61.26 | 61.26 |" in text
    assert "| HellaSwag (10-Shot) | normalized accuracy | - | 82.55 | 82.55 |" in text
    average = sum(SCORES.values()) / len(SCORES)
    assert f"| Average |  | - | {average:.2f} | {average:.2f} |" in text
    # model-index carries the merged model's own scores only
    assert {r.dataset_type: r.metric_value for r in ModelCard.load(readme).data.eval_results} == SCORES
    with pytest.raises(HubkitError, match="only a merged card"):
        write_card("adapter", _artifact(tmp_path, "adapter"), EVAL, compare)
