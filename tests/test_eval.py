"""`hubkit eval`: the leaderboard tasks on local benchmark files through lm-evaluation-harness.

Real lm-eval on the tiny Llama with a few items per task: hubkit's scores equal
``lm_eval.simple_evaluate`` run directly on the same model, task configs and files; the eval
artifact pins the benchmarks with the leak certificate's hashes; a card's model-index carries
the scores (marked partial) and huggingface_hub reads them back.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest
import yaml

from hubkit.cards import card_context, write_card
from hubkit.decontam.benchmarks import load_benchmarks
from hubkit.errors import HubkitError
from hubkit.evaluate import RESULTS, TASKS, EvalManifest, evaluate_model, mmlu_subjects, task_dir
from hubkit.scores import LEADERBOARD_V1

SAMPLE = Path(str(files("hubkit").joinpath("sample_data/benchmarks")))
FILES = {
    "arc": str(SAMPLE / "arc_challenge_test.jsonl"),
    "hellaswag": str(SAMPLE / "hellaswag_val.txt"),
    "mmlu": str(SAMPLE / "mmlu"),
    "truthfulqa": str(SAMPLE / "TruthfulQA.csv"),
    "gsm8k": str(SAMPLE / "gsm8k_test.jsonl"),
}
FAST = ["arc", "hellaswag", "truthfulqa"]  # MMLU (57 subjects) and GSM8K (generation) run in bench_eval
LIMIT = 3
CARD_FIXTURES = Path(__file__).parent / "fixtures" / "cards"
TINY_RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "tiny.yaml"


@pytest.fixture(scope="module")
def scored(tiny_llama: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "tiny"
    result = evaluate_model(
        str(tiny_llama), tasks=FAST, benchmark_files=FILES, limit=LIMIT, batch_size=4, device="cpu", out=out
    )
    assert not result.reused
    return result.folder


def test_scores_equal_lm_eval_run_directly(scored: Path, tiny_llama: Path) -> None:
    """The wrapper changes no score: lm-eval's own entry point, same model, configs, files, limit."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    manager = TaskManager(
        include_path=str(task_dir()), include_defaults=False, metadata={"benchmark_files": FILES}
    )
    direct = lm_eval.simple_evaluate(
        model="hf",
        model_args={"pretrained": str(tiny_llama)},
        tasks=[TASKS[k].lm_eval_task for k in FAST],
        limit=LIMIT,
        batch_size=4,
        device="cpu",
        task_manager=manager,
        log_samples=False,
    )
    ours = json.loads((scored / RESULTS).read_text())
    for key in FAST:
        name = TASKS[key].lm_eval_task
        theirs = {m: v for m, v in direct["results"][name].items() if isinstance(v, float)}
        assert theirs and {m: ours["results"][name][m] for m in theirs} == theirs
    manifest = EvalManifest.read(scored)
    for record in manifest.tasks:
        task = next(t for t in LEADERBOARD_V1 if t.key == record.key)
        name = record.lm_eval_task
        metric = task.sources[-1][1]
        assert record.score == round(100 * direct["results"][name][f"{metric},none"], 2)
        assert record.num_fewshot == task.shots == direct["n-shot"][name]
        assert record.items_scored == LIMIT
    assert manifest.average == round(sum(r.score for r in manifest.tasks) / len(FAST), 2)


def test_manifest_pins_the_leak_checks_questions(scored: Path, tiny_llama: Path) -> None:
    manifest = EvalManifest.read(scored)
    certified = {b.name: b.record() for b in load_benchmarks(FAST, {k: FILES[k] for k in FAST})}
    assert {t.key: t.benchmark.model_dump() for t in manifest.tasks} == certified
    assert manifest.limit == LIMIT and manifest.lm_eval_version and manifest.adapter is None
    assert manifest.skipped == {}
    arc = next(t for t in manifest.tasks if t.key == "arc")
    assert (arc.shots_from, arc.leaderboard_shots_from) == (
        "the evaluated split, the scored item left out",
        "train",
    )
    # Same inputs: the artifact is kept, nothing is loaded or scored again.
    again = evaluate_model(str(tiny_llama), tasks=FAST, benchmark_files=FILES, limit=LIMIT, out=scored)
    assert again.reused and again.manifest == manifest


def test_card_model_index_from_the_eval_artifact(scored: Path, tmp_path: Path) -> None:
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    adapter = Path(shutil.copytree(CARD_FIXTURES / "adapter", tmp_path / "adapter"))
    context = card_context("adapter", adapter, scored)
    assert all(s.limit == LIMIT for s in context.scores)
    card = ModelCard.load(write_card("adapter", adapter, scored))
    _, results = model_index_to_eval_results(card.data.to_dict()["model-index"])
    manifest = EvalManifest.read(scored)
    by_dataset = {t.dataset_type: t.key for t in LEADERBOARD_V1}
    assert {by_dataset[r.dataset_type]: r.metric_value for r in results} == {
        t.key: t.score for t in manifest.tasks
    }
    assert all(r.dataset_args["limit"] == LIMIT for r in results)
    assert f"first {LIMIT} items" in card.text

    (scored / RESULTS).write_text((scored / RESULTS).read_text().replace("acc_norm", "acc_nrm"))
    with pytest.raises(HubkitError, match="changed since `hubkit eval` wrote it"):
        card_context("adapter", adapter, scored)


def test_the_train_and_push_summary_shows_each_models_scores(scored: Path) -> None:
    """The summary's scores: a row per model the eval stage scored, its average then each task."""
    from hubkit.evaluate import EvalResult, RecipeEval
    from hubkit.pipeline import PipelineResult
    from hubkit.recipe import load_recipe

    manifest = EvalManifest.read(scored)
    results = {label: EvalResult(scored, manifest, reused=False) for label in ("merged", "adapter", "base")}
    summary = PipelineResult(load_recipe(TINY_RECIPE), evaluation=RecipeEval(results, None)).summary()
    lines = summary.splitlines()
    table = lines.index(next(line for line in lines if line.startswith("model ")))
    assert lines[table].split() == ["model", "average", *FAST]
    expected = [f"{manifest.average:.2f}", *(f"{t.score:.2f}" for t in manifest.tasks)]
    assert [line.split() for line in lines[table + 1 : table + 4]] == [[m, *expected] for m in results]
    assert lines[table + 4] == f"partial: at most {LIMIT} items per task (eval.limit)"


def test_adapter_is_scored_through_peft(tiny_llama: Path, tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    config = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(tmp_path / "adapter")
    result = evaluate_model(
        str(tiny_llama),
        adapter=str(tmp_path / "adapter"),
        tasks=["truthfulqa"],
        benchmark_files=FILES,
        limit=2,
        batch_size=2,
        device="cpu",
        out=tmp_path / "eval",
    )
    assert result.manifest.adapter is not None and result.manifest.adapter.sha256
    assert result.manifest.tasks[0].items_scored == 2
    # An adapter is not a model: a one-line error that says what to do.
    with pytest.raises(HubkitError, match="a LoRA adapter, not a model; give its base model as MODEL"):
        evaluate_model(str(tmp_path / "adapter"), tasks=["arc"], benchmark_files=FILES)
    with pytest.raises(HubkitError, match="no adapter_config.json"):
        evaluate_model(str(tiny_llama), adapter=str(tiny_llama), tasks=["arc"], benchmark_files=FILES)


def test_one_line_errors(tiny_llama: Path, tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "hubkit", "eval", str(tiny_llama), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    missing = run("--tasks", "arc", "--benchmark-file", f"arc={tmp_path / 'nope.jsonl'}")
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        f"Error: benchmark 'arc': {tmp_path / 'nope.jsonl'}: file not found"
    ]
    unknown = run("--tasks", "arc,bigbench", "--benchmark-file", f"arc={FILES['arc']}")
    assert (
        unknown.returncode == 1 and "Error: unknown task 'bigbench'; known: arc, hellaswag" in unknown.stderr
    )
    nofile = run("--tasks", "gsm8k")  # read where data check reads it: the Hub, which lacks it here
    (line,) = nofile.stderr.strip().splitlines()
    assert nofile.returncode == 1 and line.startswith("Error: benchmark 'gsm8k': cannot ask the Hub")
    assert "of openai/gsm8k it serves" in line and line.endswith("--benchmark-file gsm8k=PATH")
    with pytest.raises(HubkitError, match="5-shot scoring needs at least 6"):
        short = tmp_path / "short.jsonl"
        short.write_text("".join(Path(FILES["gsm8k"]).read_text().splitlines(keepends=True)[:5]))
        evaluate_model(str(tiny_llama), tasks=["gsm8k"], benchmark_files={"gsm8k": str(short)})


def test_winogrande_is_skipped_without_a_file() -> None:
    from hubkit.evaluate import resolve_tasks

    run, skipped = resolve_tasks(None, FILES)
    assert run == ["arc", "hellaswag", "mmlu", "truthfulqa", "gsm8k"]
    assert set(skipped) == {"winogrande"}


def test_task_configs_carry_the_leaderboard_settings() -> None:
    """The YAML configs (lm-eval's data) and the card's leaderboard table agree on the shots."""
    shots = {t.key: t.shots for t in LEADERBOARD_V1}
    for key, task in TASKS.items():
        path = task_dir() / f"{task.lm_eval_task.removeprefix('hubkit_')}.yaml"
        if key == "mmlu":
            path = task_dir() / "mmlu" / "_template_yaml"
        text = "\n".join(line for line in path.read_text().splitlines() if "!function" not in line)
        assert yaml.safe_load(text)["num_fewshot"] == shots[key], key
    group = yaml.safe_load((task_dir() / "mmlu" / "_mmlu.yaml").read_text())
    assert group["task"] == [f"hubkit_mmlu_{s}" for s in mmlu_subjects()] and len(group["task"]) == 57
    assert group["aggregate_metric_list"] == [{"metric": "acc", "weight_by_size": False}]


def _eval_recipe(*sets: str):
    from hubkit.recipe import load_recipe

    fast = ["training.max_steps=6", "training.save_steps=3", "eval.tasks=[arc]", "eval.limit=2"]
    return load_recipe(TINY_RECIPE, [*fast, "eval.batch_size=4", *sets])


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_train_and_push_scores_and_pushes_model_index(local_hub, tmp_path, monkeypatch) -> None:
    """The tiny recipe with an eval section: base, adapter and merged scored after verify, the
    gate passed, model-index pushed and read back by huggingface_hub; a re-run scores nothing;
    a merge made worse on purpose is stopped by the gate."""
    from huggingface_hub import HfApi, ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    from hubkit.pipeline import train_and_push

    monkeypatch.chdir(tmp_path)
    repos = [f"hub.{k}_repo=alice/ev-{k}" for k in ("dataset", "adapter", "merged")]
    recipe = _eval_recipe(*repos, "eval.gate.max_drop=0")
    result = train_and_push(recipe, echo=lambda _: None)
    stage = next(s for s in result.stages if s.name == "eval")
    assert stage.status == "ran" and stage.detail.startswith("average merged ")
    merged = EvalManifest.read(result.artifacts["eval-merged"])
    base = EvalManifest.read(result.artifacts["eval-base"])
    assert result.artifacts["eval-base"].parent == Path(os.environ["HUBKIT_CACHE"]) / "eval"
    assert merged.average >= base.average  # the gate let it through (max_drop 0)
    for role in ("adapter", "merged"):
        card = ModelCard.load(f"alice/ev-{role}")
        _, results = model_index_to_eval_results(card.data.to_dict()["model-index"])
        scored = EvalManifest.read(result.artifacts[f"eval-{role}"])
        assert {r.metric_value for r in results} == {t.score for t in scored.tasks}
        assert all(
            r.dataset_args == {"num_few_shot": r.dataset_args["num_few_shot"], "limit": 2} for r in results
        )
    # the merged card shows the base and the adapter on it beside the merged model, like the paper
    body = ModelCard.load("alice/ev-merged").text
    assert "| Benchmark | Metric | base | base + adapter | merged |" in body
    row = f"| normalized accuracy | {base.average:.2f} | {{:.2f}} | {merged.average:.2f} |"
    assert row.format(EvalManifest.read(result.artifacts["eval-adapter"]).average) in body

    again = train_and_push(recipe, echo=lambda _: None)
    assert next(s for s in again.stages if s.name == "eval").status == "skipped"

    # A merge made worse on purpose: all weight on an untrained copy of the base. The gate
    # stops it before anything is pushed; the copy's scores come from the cache (same hash).
    worse = Path(shutil.copytree(tmp_path / "runs" / "tiny" / "base-model", tmp_path / "untrained"))
    (worse / "README.md").write_text("---\ndatasets:\n- openai/gsm8k\n---\n# untrained\n")
    bad = [f"hub.{k}_repo=alice/ev-bad-{k}" for k in ("dataset", "adapter", "merged")]
    recipe = _eval_recipe(*bad, "eval.gate.max_drop=0", f"merge.models=[{worse}]", "merge.weights=[0.0, 1.0]")
    with pytest.raises(
        HubkitError, match=r"eval gate: merged average .* points below merged-adapter's"
    ) as exc:
        train_and_push(recipe, echo=lambda _: None)
    assert re.search(rf"eval +refused .*{re.escape(str(worse))} {base.average:.2f} =", str(exc.value))
    api = HfApi()
    assert not any(api.repo_exists(f"alice/ev-bad-{k}") for k in ("adapter", "merged"))
    assert not api.repo_exists("alice/ev-bad-dataset", repo_type="dataset")


def test_winogrande_runs_from_a_given_file(tiny_llama: Path, tmp_path: Path) -> None:
    """Winogrande's config (lm-eval's partial scoring functions) on a file in its jsonl format."""
    rows = [
        {"sentence": f"The cup {i} did not fit in the box because the _ was too {size}.", "option1": "cup",
         "option2": "box", "answer": answer}
        for i in range(4) for size, answer in (("big", "1"), ("small", "2"))
    ]  # fmt: skip
    path = tmp_path / "winogrande.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = evaluate_model(
        str(tiny_llama), tasks=["winogrande"], benchmark_files={"winogrande": str(path)}, limit=2,
        batch_size=2, device="cpu", out=tmp_path / "eval",
    )  # fmt: skip
    (task,) = result.manifest.tasks
    assert (task.key, task.num_fewshot, task.items_scored, task.metric) == ("winogrande", 5, 2, "acc")
    assert task.benchmark.items == 8 and result.manifest.skipped == {}


def test_the_merged_cards_comparison_names_a_local_input_without_its_path(tmp_path):
    """A recipe's merge partner given as an absolute folder is a column named by its base name."""
    from types import SimpleNamespace

    from hubkit.evaluate import RecipeEval

    partner = tmp_path / "home" / "someone" / "partner-13b"
    partner.mkdir(parents=True)
    results = {
        label: SimpleNamespace(folder=tmp_path / "eval" / str(i))
        for i, label in enumerate(["merged", "adapter", str(partner), "org/hub-model"])
    }
    compare = RecipeEval(results, None).compare()  # type: ignore[arg-type]
    assert list(compare) == ["partner-13b", "org/hub-model", "base + adapter"]
    assert compare["partner-13b"] == tmp_path / "eval" / "2"
