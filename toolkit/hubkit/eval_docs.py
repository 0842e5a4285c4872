"""Benchmark files or Hub datasets as lm-evaluation-harness documents: the ``custom_dataset``
loaders of hubkit's task configs (``eval_tasks/*.yaml``).

The sources are read by the same readers as the leak check (``hubkit data check``), so the model
is scored on the questions its training data was checked against. Each loader takes the task's
metadata as keyword arguments (lm-eval passes the model arguments and ``--metadata`` too, hence
``**kwargs``): ``benchmark_files`` maps a benchmark name to its local file (MMLU: a folder of
``<subject>_test.csv``) or to ``hub:ID@REVISION``, the leak check's Hub split of that repo (MMLU:
its ``all`` config, one subject's rows per subtask; TruthfulQA: ``EvalTask.hub_config``). The
documents have the fields lm-eval's own task configs use, so the prompts are the leaderboard's.
Every loader returns one ``test`` split; few-shot examples come from it with the scored item left
out (lm-eval does that when the two splits are the same).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from .benchmarks import BENCHMARKS
from .errors import HubkitError

SPLIT = "test"
HUB = "hub:"  # a benchmark source on the Hub: hub:ID[@REVISION], as the leak check reads it


def _source(name: str, benchmark_files: dict[str, str] | None) -> str:
    source = (benchmark_files or {}).get(name)
    if not source:
        raise HubkitError(f"benchmark {name!r}: no local file given (metadata benchmark_files.{name})")
    return source


def _records(name: str, source: str | Path) -> list[dict[str, Any]]:
    """The rows of a local file, or of the Hub split the leak check reads (``hub:ID@REV``)."""
    from .decontam.benchmarks import _from_file

    if str(source).startswith(HUB):
        return hub_rows(name, str(source))
    return _from_file(name, Path(source))


@lru_cache(maxsize=8)
def hub_rows(name: str, source: str) -> list[dict[str, Any]]:
    """The rows lm-eval scores of ``hub:ID@REV``: the leak check's Hub split, read by its reader
    (``decontam.benchmarks``), from ``EvalTask.hub_config`` where the leak check's config lacks what
    is scored. Kept per process: MMLU's 57 subtasks share one load (callers do not mutate them)."""
    from dataclasses import replace

    from .decontam.benchmarks import LOADERS, _from_hub

    loader, config = LOADERS[name], BENCHMARKS[name].eval.hub_config
    rows, _, _ = _from_hub(name, replace(loader, config=config or loader.config), source.removeprefix(HUB))
    return rows


def _dataset(docs: list[dict[str, Any]]):
    from datasets import Dataset, DatasetDict

    return DatasetDict({SPLIT: Dataset.from_list(docs)})


def arc(benchmark_files: dict[str, str] | None = None, **kwargs: Any):
    """ARC-Challenge: ``query`` (``Question: ...\\nAnswer:``), ``choices``, ``gold``."""
    rows = _records("arc", _source("arc", benchmark_files))
    docs = []
    for row in rows:
        if "query" in row:  # lm-eval export; the export leaves off the answer cue
            query = row["query"].strip().removesuffix("Answer:").strip()
            docs.append(
                {"query": f"{query}\nAnswer:", "choices": list(row["choices"]), "gold": int(row["gold"])}
            )
        else:  # the Hub's schema
            choices = row["choices"]
            docs.append(
                {
                    "query": f"Question: {row['question']}\nAnswer:",
                    "choices": list(choices["text"]),
                    "gold": choices["label"].index(row["answerKey"]),
                }
            )
    return _dataset(docs)


def hellaswag(benchmark_files: dict[str, str] | None = None, **kwargs: Any):
    """HellaSwag: ``query`` (``activity: context``), ``choices`` (4 endings), ``gold``, as
    lm-eval's ``process_docs`` makes them (the same WikiHow markup removal)."""
    from lm_eval.tasks.hellaswag.utils import preprocess

    rows = _records("hellaswag", _source("hellaswag", benchmark_files))
    docs = []
    for row in rows:
        if "query" in row:  # the 6-line text export: context already joined
            query = preprocess(row["query"])
        else:
            query = preprocess(f"{row['activity_label']}: {row['ctx_a']} {row['ctx_b'].capitalize()}")
        docs.append(
            {"query": query, "choices": [preprocess(e) for e in row["endings"]], "gold": int(row["label"])}
        )
    return _dataset(docs)


def mmlu(benchmark_files: dict[str, str] | None = None, subject: str = "", **kwargs: Any):
    """One MMLU subject: ``question``, ``choices`` (4), ``answer`` (0-3), from ``<subject>_test.csv``
    in the MMLU folder (the 57 files of the original release, as ``data check`` reads them) or
    the rows of that ``subject`` in the Hub's ``all`` config."""
    source = _source("mmlu", benchmark_files)
    if source.startswith(HUB):
        rows = [row for row in _records("mmlu", source) if row["subject"] == subject]
    else:
        part = str(BENCHMARKS["mmlu"].eval.subtask_file).format(subtask=subject)
        rows = [
            {**row, "choices": [row[f"choice{i}"] for i in range(4)]}
            for row in _records("mmlu", Path(source) / part)
        ]
    docs = [
        {
            "question": row["question"],
            "choices": [str(c) for c in row["choices"]],
            "answer": int(row["answer"]),
        }
        for row in rows
    ]
    return _dataset(docs)


def truthfulqa(benchmark_files: dict[str, str] | None = None, **kwargs: Any):
    """TruthfulQA multiple choice: ``question`` and ``mc2_targets`` (``choices``, ``labels``).

    From ``mc_task.json`` (or the Hub's ``multiple_choice`` config) these are the original mc2
    targets; from ``TruthfulQA.csv`` the true
    answers (``Correct Answers``) then the false ones (``Incorrect Answers``), which is how the
    mc2 targets were drawn up (the targets' wording and order can differ from mc_task.json's).
    """
    rows = _records("truthfulqa", _source("truthfulqa", benchmark_files))
    docs = []
    for row in rows:
        if "mc2_targets" in row:
            targets = row["mc2_targets"]
            if "choices" not in targets:  # mc_task.json: {text: label}
                targets = {"choices": list(targets), "labels": [int(v) for v in targets.values()]}
            docs.append({"question": row["question"], "mc2_targets": dict(targets)})
        else:
            true = [a.strip() for a in row["Correct Answers"].split(";") if a.strip()]
            false = [a.strip() for a in row["Incorrect Answers"].split(";") if a.strip()]
            docs.append(
                {
                    "question": row["Question"],
                    "mc2_targets": {"choices": true + false, "labels": [1] * len(true) + [0] * len(false)},
                }
            )
    return _dataset(docs)


def gsm8k(benchmark_files: dict[str, str] | None = None, **kwargs: Any):
    """GSM8K: ``question`` and ``answer`` (the worked solution ending in ``#### N``)."""
    rows = _records("gsm8k", _source("gsm8k", benchmark_files))
    return _dataset([{"question": row["question"], "answer": row["answer"]} for row in rows])


def winogrande(benchmark_files: dict[str, str] | None = None, **kwargs: Any):
    """Winogrande: ``sentence`` (with ``_``), ``option1``, ``option2``, ``answer`` ("1"/"2")."""
    from .data import read_records

    rows = read_records(_source("winogrande", benchmark_files))
    fields = ("sentence", "option1", "option2", "answer")
    return _dataset([{k: str(row[k]) for k in fields} for row in rows])
