"""`hubkit eval` on benchmarks read from Hub datasets (the local Hub), as the leak check reads them.

Small benchmark repos in the Hub's schemas (ARC-Challenge, TruthfulQA's generation and
multiple_choice configs, MMLU's ``all`` config, HellaSwag, GSM8K ``main``) are pushed to the local
Hub; ``hubkit eval --benchmark-file NAME=hub:ID@REV`` scores the tiny Llama on them with the same
scores as the same rows in a local file, records the leak certificate's benchmark record
(``load_benchmark(name, ref).record()``), pins a ref without a revision to the commit the Hub
serves, and fails with one-line errors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest
from test_decontam import run_cli

from hubkit.decontam.benchmarks import load_benchmark
from hubkit.errors import HubkitError
from hubkit.evaluate import RESULTS, EvalManifest, _plan, evaluate_model, mmlu_subjects
from hubkit.rows import read_records

SAMPLE = Path(str(files("hubkit").joinpath("sample_data/benchmarks")))
LIMIT = 2


def _push(rows: list[dict], repo: str, config: str, split: str, token: str) -> str:
    """Push ``rows`` as one config and split of a dataset repo; the repo's commit after it."""
    from datasets import Dataset
    from huggingface_hub import HfApi

    Dataset.from_list(rows).push_to_hub(repo, config_name=config, split=split, token=token)
    return HfApi().dataset_info(repo).sha


def _jsonl(rows: list[dict], path: Path) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _truthfulqa_rows() -> tuple[list[dict], list[dict]]:
    """Eight TruthfulQA questions as the Hub's generation and multiple_choice configs hold them
    (the latter in another order, as on the Hub)."""
    generation, multiple_choice = [], []
    for r in read_records(SAMPLE / "TruthfulQA.csv")[:8]:
        true, false = r["Correct Answers"].split("; "), r["Incorrect Answers"].split("; ")
        generation.append(
            {"type": r["Type"], "category": r["Category"], "question": r["Question"],
             "best_answer": r["Best Answer"], "correct_answers": true, "incorrect_answers": false,
             "source": r["Source"]}
        )  # fmt: skip
        multiple_choice.append(
            {"question": r["Question"],
             "mc1_targets": {"choices": [r["Best Answer"], *false], "labels": [1] + [0] * len(false)},
             "mc2_targets": {"choices": true + false, "labels": [1] * len(true) + [0] * len(false)}}
        )  # fmt: skip
    return generation, multiple_choice[::-1]


@pytest.fixture(scope="module")
def hub(local_hub, write_token, tmp_path_factory) -> dict:
    """Benchmark repos on the local Hub: refs pinned at their commits, and local copies of the rows."""
    folder = tmp_path_factory.mktemp("hub-benchmarks")
    arc = []
    for i, row in enumerate(read_records(SAMPLE / "arc_challenge_test.jsonl")[:30]):  # 25-shot needs 26
        labels = "ABCDE"[: len(row["choices"])]
        question = row["query"].removeprefix("Question:").strip()
        arc.append(
            {"id": f"arc-{i}", "question": question, "answerKey": labels[int(row["gold"])],
             "choices": {"text": row["choices"], "label": list(labels)}}
        )  # fmt: skip
    generation, multiple_choice = _truthfulqa_rows()
    mmlu = [
        {"question": r["question"], "subject": part.name.removesuffix("_test.csv"),
         "choices": [r[f"choice{i}"] for i in range(4)], "answer": int(r["answer"])}
        for part in sorted((SAMPLE / "mmlu").glob("*_test.csv")) for r in read_records(part)
    ]  # fmt: skip
    text = (SAMPLE / "hellaswag_val.txt").read_text(encoding="utf-8").splitlines()[: 6 * 12]
    hellaswag = []
    for i in range(0, len(text), 6):
        activity, _, context = text[i].partition(": ")
        hellaswag.append(
            {"ind": i, "activity_label": activity, "ctx_a": context, "ctx_b": "", "ctx": context,
             "endings": text[i + 2 : i + 6], "label": text[i + 1]}
        )  # fmt: skip
    gsm8k = read_records(SAMPLE / "gsm8k_test.jsonl")[:8]
    repos = {  # benchmark: (repo, config, split, rows)
        "arc": ("alice/bench-arc", "ARC-Challenge", "test", arc),
        "truthfulqa": ("alice/bench-tqa", "multiple_choice", "validation", multiple_choice),
        "mmlu": ("alice/bench-mmlu", "all", "test", mmlu),
        "hellaswag": ("alice/bench-swag", "default", "validation", hellaswag),
        "gsm8k": ("alice/bench-gsm8k", "main", "test", gsm8k),
    }
    _push(generation, "alice/bench-tqa", "generation", "validation", write_token)  # the leak check's
    return {
        "rows": {name: rows for name, (_, _, _, rows) in repos.items()},
        "refs": {
            name: f"hub:{repo}@{_push(rows, repo, config, split, write_token)}"
            for name, (repo, config, split, rows) in repos.items()
        },
        "local": {
            "arc": _jsonl(arc, folder / "arc.jsonl"),
            "truthfulqa": _jsonl(multiple_choice, folder / "mc_task.jsonl"),
        },
    }


def test_hub_scores_equal_the_same_rows_from_a_local_file(hub, tiny_llama, tmp_path, capsys) -> None:
    """`hubkit eval --benchmark-file arc=hub:ID` (no revision: pinned to the served commit) and
    truthfulqa=hub:ID@REV score what the same rows score from local files; the manifest records
    the leak certificate's benchmark record of the pinned ref."""
    from huggingface_hub import HfApi

    out = tmp_path / "hub"
    code, stdout, err = run_cli(
        ["eval", str(tiny_llama), "--tasks", "arc,truthfulqa", "--limit", str(LIMIT), "--batch-size", "2",
         "--device", "cpu", "--out", str(out), "--benchmark-file", "arc=hub:alice/bench-arc",
         "--benchmark-file", f"truthfulqa={hub['refs']['truthfulqa']}"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert f"Wrote {out}" in stdout
    local = evaluate_model(
        str(tiny_llama), tasks=["arc", "truthfulqa"], benchmark_files=hub["local"], limit=LIMIT,
        batch_size=2, device="cpu", out=tmp_path / "local",
    )  # fmt: skip
    ours, theirs = (json.loads((f / RESULTS).read_text())["results"] for f in (out, local.folder))
    for name in ("hubkit_arc_challenge", "hubkit_truthfulqa_mc2"):
        scores = {m: v for m, v in theirs[name].items() if isinstance(v, float)}
        assert scores and {m: ours[name][m] for m in scores} == scores

    manifest = EvalManifest.read(out)
    served = HfApi().dataset_info("alice/bench-arc").sha
    assert hub["refs"]["arc"] == f"hub:alice/bench-arc@{served}"
    records = {t.key: t.benchmark.model_dump() for t in manifest.tasks}
    assert records == {k: load_benchmark(k, hub["refs"][k]).record() for k in ("arc", "truthfulqa")}
    assert records["arc"] == {
        "source": "alice/bench-arc/ARC-Challenge split test", "revision": served,
        "sha256": load_benchmark("arc", hub["local"]["arc"]).sha256, "items": 30,
    }  # fmt: skip
    # The leak check of the unpinned ref records the same (the repo has not moved).
    assert load_benchmark("arc", "hub:alice/bench-arc").record() == records["arc"]
    assert [t.items_scored for t in manifest.tasks] == [LIMIT, LIMIT]


def test_each_leak_checked_benchmark_reads_its_hub_schema(hub, tiny_llama) -> None:
    """Every leak-checked benchmark from the Hub: the record is the leak check's, and lm-eval's
    documents are those of the same rows in the local formats (HellaSwag: lm-eval's own
    ``process_docs``; MMLU: each subject's rows of the ``all`` config)."""
    from datasets import Dataset
    from lm_eval.tasks.hellaswag.utils import process_docs

    from hubkit import eval_docs

    refs = hub["refs"]
    plan = _plan(str(tiny_llama), None, list(refs), refs, None)
    assert plan.files == refs
    assert {k: b.model_dump() for k, b in plan.benches.items()} == {
        k: load_benchmark(k, ref).record() for k, ref in refs.items()
    }

    def docs(name: str, source: str, **kwargs) -> list[dict]:
        return getattr(eval_docs, name)(benchmark_files={name: source}, **kwargs)["test"].to_list()

    fields = ("query", "choices", "gold")
    swag = process_docs(Dataset.from_list(hub["rows"]["hellaswag"])).to_list()
    assert docs("hellaswag", refs["hellaswag"]) == [{k: d[k] for k in fields} for d in swag]
    for subject in mmlu_subjects():
        local = docs("mmlu", str(SAMPLE / "mmlu"), subject=subject)
        assert docs("mmlu", refs["mmlu"], subject=subject) == local
    assert docs("gsm8k", refs["gsm8k"]) == docs("gsm8k", str(SAMPLE / "gsm8k_test.jsonl"))[:8]
    assert docs("truthfulqa", refs["truthfulqa"]) == docs("truthfulqa", hub["local"]["truthfulqa"])


def test_hub_source_errors_are_one_line(hub, tiny_llama, write_token, tmp_path) -> None:
    model = str(tiny_llama)

    def refused(name: str, source: str, match: str) -> None:
        with pytest.raises(HubkitError, match=match):
            evaluate_model(model, tasks=[name], benchmark_files={name: source})

    sha = hub["refs"]["arc"].partition("@")[2]
    where = "benchmark 'arc': cannot load alice/no-such/ARC-Challenge split test"
    refused("arc", f"hub:alice/no-such@{sha}", f"^{where} at {sha} \\(DatasetNotFoundError\\); give a local")
    refused("arc", "hub:alice/no-such", "^benchmark 'arc': cannot ask the Hub which commit of alice/no-such")
    unknown = "0" * 40
    refused("arc", f"hub:alice/bench-arc@{unknown}", f"alice/bench-arc/ARC-Challenge split test at {unknown}")
    refused("winogrande", hub["refs"]["arc"], "Hub sources are read for the leak-checked benchmarks")
    anatomy = [r for r in hub["rows"]["mmlu"] if r["subject"] == "anatomy"]
    part = "hub:alice/bench-mmlu-part@" + _push(anatomy, "alice/bench-mmlu-part", "all", "test", write_token)
    refused("mmlu", part, f"^benchmark 'mmlu': {part} subject abstract_algebra: 0 items; 5-shot")
    # TruthfulQA's mc2 targets come from its multiple_choice config: the same questions, or no score.
    generation, multiple_choice = _truthfulqa_rows()
    _push(generation, "alice/bench-tqa-other", "generation", "validation", write_token)
    multiple_choice[0]["question"] = "A question the leak check never read?"
    other = _push(multiple_choice, "alice/bench-tqa-other", "multiple_choice", "validation", write_token)
    refused(
        "truthfulqa",
        f"hub:alice/bench-tqa-other@{other}",
        "config multiple_choice: not the questions of config generation \\(which the leak check reads\\)",
    )

    # Offline, nothing cached, no revision given: one line, at once (no download retries), from the command.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    offline = subprocess.run(
        [sys.executable, "-m", "hubkit", "eval", model, "--tasks", "arc", "--benchmark-file",
         "arc=hub:alice/bench-arc"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert offline.returncode == 1
    assert offline.stderr.strip().splitlines() == [
        "Error: benchmark 'arc': cannot ask the Hub which commit of alice/bench-arc it serves (offline, or "
        "no such dataset); give a local copy with --benchmark-file arc=PATH"
    ]
