"""Benchmark test sets as (question, gold answers) items: one small loader per benchmark.

Each benchmark is loaded from the Hub split the Open LLM Leaderboard (v1) scored, through
``datasets``, or from a local file. A loader's row function reads both the Hub schema and the
local formats (those of lm-evaluation-harness exports: ARC jsonl with ``query``/``choices``/
``gold``, HellaSwag 6-line text, MMLU ``*_test.csv``, TruthfulQA.csv or mc_task.json, GSM8K
jsonl). "The question" is the text a model is prompted with, without answer choices:

| benchmark | Hub split | question | gold answer |
|---|---|---|---|
| arc | allenai/ai2_arc ARC-Challenge test | question | the correct choice's text |
| hellaswag | Rowan/hellaswag validation | ``activity: context`` | the correct ending |
| mmlu | cais/mmlu all test | question | the correct choice's text |
| truthfulqa | truthfulqa/truthful_qa generation validation | question | best and other correct answers |
| gsm8k | openai/gsm8k main test | question | the final number after ``####`` |

(The leaderboard's ids ``ai2_arc``, ``hellaswag``, ``truthful_qa`` and ``gsm8k`` are the
same repos under their older names.) A local source is a path; ``hub:ID[@REVISION]`` picks
another Hub repo (a mirror, a pinned commit) with the same schema.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..artifacts import digest_of
from ..errors import HubkitError, dataset_errors, hub_errors
from ..portable import portable_ref
from ..rows import read_records


@dataclass(frozen=True)
class Item:
    """One benchmark question, its gold answer(s), and its wrong ones (the other choices):
    a training output must show one of those to count as giving a different answer.
    ``choices`` are a multiple-choice item's options in their order (for the views a training
    row may copy, see ``views``)."""

    question: str
    answers: tuple[str, ...]
    wrong: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Benchmark:
    """A loaded benchmark: its items and what pins them (source, revision, content hash)."""

    name: str
    items: list[Item]
    source: str
    revision: str | None
    sha256: str
    numeric: bool  # answers are numbers (GSM8K): compared by value

    def record(self) -> dict[str, Any]:
        """What the leak certificate says about this benchmark."""
        return {
            "source": portable_ref(self.source),  # a local file by name: its sha256 is beside
            "revision": self.revision,
            "sha256": self.sha256,
            "items": len(self.items),
        }


def _arc(row: dict[str, Any]) -> Item:
    if "query" in row:  # lm-eval export: "Question: ...\nAnswer:"
        question = row["query"].removeprefix("Question:").removesuffix("Answer:").strip()
        return _choice_item(question, row["choices"], int(row["gold"]))
    choices = row["choices"]
    return _choice_item(row["question"].strip(), choices["text"], choices["label"].index(row["answerKey"]))


def _choice_item(question: str, choices: list[Any], gold: int) -> Item:
    """A multiple-choice item: the gold choice, and the others as its wrong answers."""
    texts = [str(c) for c in choices]
    return Item(question, (texts[gold],), tuple(texts[:gold] + texts[gold + 1 :]), tuple(texts))


def _hellaswag_text(text: str) -> str:
    """lm-evaluation-harness's HellaSwag preprocessing: WikiHow markup out."""
    text = text.strip().replace(" [title]", ". ")
    return re.sub(r"\s+", " ", re.sub(r"\[.*?\]", "", text)).strip()


def _hellaswag(row: dict[str, Any]) -> Item:
    if "query" in row:
        question = row["query"]
    else:
        ctx = f"{row['ctx_a']} {row['ctx_b'].capitalize()}".strip()
        question = _hellaswag_text(f"{row['activity_label']}: {ctx}")
    return _choice_item(question, [_hellaswag_text(e) for e in row["endings"]], int(row["label"]))


def _mmlu(row: dict[str, Any]) -> Item:
    choices = row["choices"] if "choices" in row else [row[f"choice{i}"] for i in range(4)]
    return _choice_item(row["question"].strip(), choices, int(row["answer"]))


def _truthfulqa(row: dict[str, Any]) -> Item:
    if "mc1_targets" in row:  # mc_task.json: {"question", "mc1_targets": {text: 0/1}}
        targets = row["mc1_targets"]
        if isinstance(targets, dict) and "choices" in targets:  # Hub multiple_choice config
            targets = dict(zip(targets["choices"], targets["labels"], strict=True))
        return Item(
            row["question"].strip(),
            tuple(text for text, label in targets.items() if label),
            tuple(text for text, label in targets.items() if not label),
        )
    if "Question" in row:  # TruthfulQA.csv
        best, correct = row["Best Answer"], row["Correct Answers"].split("; ")
        wrong = row.get("Incorrect Answers") or ""
        return Item(
            row["Question"].strip(),
            tuple(dict.fromkeys([best, *correct])),
            tuple(wrong.split("; ") if wrong else ()),
        )
    return Item(
        row["question"].strip(),
        tuple(dict.fromkeys([row["best_answer"], *row["correct_answers"]])),
        tuple(row.get("incorrect_answers") or ()),
    )


def gsm8k_final(answer: str) -> str:
    """The final answer of a GSM8K solution: the number after ``####``."""
    return answer.rsplit("####", 1)[-1].strip().replace(",", "")


def _gsm8k(row: dict[str, Any]) -> Item:
    return Item(row["question"].strip(), (gsm8k_final(row["answer"]),))


def _read_hellaswag_txt(path: Path) -> list[dict[str, Any]]:
    """The 6-lines-per-item text export: context, gold label, 4 endings."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if len(lines) % 6:
        raise ValueError(f"{len(lines)} lines, not a multiple of 6")
    return [
        {"query": lines[i], "label": lines[i + 1], "endings": lines[i + 2 : i + 6]}
        for i in range(0, len(lines), 6)
    ]


@dataclass(frozen=True)
class Loader:
    hub_id: str
    config: str | None
    split: str
    row: Callable[[dict[str, Any]], Item]
    numeric: bool = False


LOADERS: dict[str, Loader] = {
    "arc": Loader("allenai/ai2_arc", "ARC-Challenge", "test", _arc),
    "hellaswag": Loader("Rowan/hellaswag", None, "validation", _hellaswag),
    "mmlu": Loader("cais/mmlu", "all", "test", _mmlu),
    "truthfulqa": Loader("truthfulqa/truthful_qa", "generation", "validation", _truthfulqa),
    "gsm8k": Loader("openai/gsm8k", "main", "test", _gsm8k, numeric=True),
}


def _check_name(name: str) -> Loader:
    loader = LOADERS.get(name)
    if loader is None:
        raise HubkitError(f"unknown benchmark {name!r}; known: {', '.join(LOADERS)}")
    return loader


def _from_hub(name: str, loader: Loader, ref: str | None) -> tuple[list[dict[str, Any]], str, str | None]:
    from datasets import load_dataset

    hub_id, _, revision = (ref or loader.hub_id).partition("@")
    where = f"{hub_id}" + (f"/{loader.config}" if loader.config else "") + f" split {loader.split}"
    try:
        dataset = load_dataset(hub_id, loader.config, split=loader.split, revision=revision or None)
    except dataset_errors() as exc:  # offline, not found, gated: say which benchmark and how to go local
        raise HubkitError(
            f"benchmark {name!r}: cannot load {where} ({type(exc).__name__}); "
            f"give a local copy with --benchmark-file {name}=PATH"
        ) from None
    return dataset.to_list(), where, revision or _hub_commit(hub_id)


def _hub_commit(hub_id: str) -> str | None:
    """The commit the Hub serves now for ``hub_id`` (None when the Hub cannot be asked)."""
    from huggingface_hub import HfApi

    try:
        return HfApi().dataset_info(hub_id).sha
    except hub_errors():  # offline: the certificate records no revision rather than a guess
        return None


def _from_file(name: str, path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        raise HubkitError(f"benchmark {name!r}: {path}: file not found")
    if path.suffix == ".txt":
        try:
            return _read_hellaswag_txt(path)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise HubkitError(f"benchmark {name!r}: {path}: unreadable ({exc})") from None
    try:
        return read_records(path)
    except HubkitError as exc:
        raise HubkitError(f"benchmark {name!r}: {exc}") from None


def load_benchmark(name: str, source: str | os.PathLike[str] | None = None) -> Benchmark:
    """Load benchmark ``name`` from the Hub (``source`` None or ``hub:ID[@REV]``) or a local path."""
    loader = _check_name(name)
    ref = str(source) if source is not None else None
    if ref is None or ref.startswith("hub:"):
        rows, where, revision = _from_hub(name, loader, ref.removeprefix("hub:") if ref else None)
    else:
        rows, where, revision = _from_file(name, Path(ref)), str(ref), None
    try:
        items = [loader.row(row) for row in rows]
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
        raise HubkitError(
            f"benchmark {name!r}: {where}: rows do not look like {name} ({type(exc).__name__}: {exc})"
        ) from None
    if not items:
        raise HubkitError(f"benchmark {name!r}: {where}: no items")
    hashed = [[item.question, list(item.answers)] for item in items]
    return Benchmark(name, items, where, revision, digest_of(hashed), loader.numeric)


def load_benchmarks(names: list[str], files: dict[str, str] | None = None) -> list[Benchmark]:
    """Load several benchmarks; ``files`` maps a name to a local path (or ``hub:ID[@REV]``)."""
    files = dict(files or {})
    for name in [*names, *files]:
        _check_name(name)
    unused = sorted(set(files) - set(names))
    if unused:
        raise HubkitError(
            f"benchmark file given for {', '.join(unused)}, which is not among the benchmarks checked"
        )
    return [load_benchmark(name, files.get(name)) for name in names]
