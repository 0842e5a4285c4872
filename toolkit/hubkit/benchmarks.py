"""The benchmarks, in one table (as mergekit's ``merge_methods/registry.py`` lists merge methods).

Everything hubkit knows about a benchmark is one ``BenchmarkSpec`` in ``BENCHMARKS``: how the leak
check loads its test split and reads a row's question and gold answers (``loader``), its
two-stage leak rule and the extra views its items are indexed under (``rule``, ``views``), how
the Open LLM Leaderboard (v1) ran and named it (``leaderboard``: shots, metric, the Hub's
``model-index`` names) and which of hubkit's lm-eval task configs scores it (``eval``). The
leak check (``decontam``), the recipe's default benchmarks, ``hubkit eval``, the score reader
(``scores``) and the CLI's help all read this table. The lm-eval task configs
(``eval_tasks/*.yaml``, lm-eval's own format) state their shots again for lm-eval; a test holds
them to ``leaderboard.shots``.

Adding a benchmark: its row function below, one entry in ``BENCHMARKS``, its task config and
its document loader in ``eval_docs`` (for ``hubkit eval``). This module imports no heavy
library, so the CLI can list the benchmarks in its help.

"The question" is the text a model is prompted with, without answer choices; a row function
reads both the Hub schema and the local formats (those of lm-evaluation-harness exports: ARC
jsonl with ``query``/``choices``/``gold``, HellaSwag 6-line text, MMLU ``*_test.csv``,
TruthfulQA.csv or mc_task.json, GSM8K jsonl):

| benchmark | Hub split | question | gold answer |
|---|---|---|---|
| arc | allenai/ai2_arc ARC-Challenge test | question | the correct choice's text |
| hellaswag | Rowan/hellaswag validation | ``activity: context`` | the correct ending |
| mmlu | cais/mmlu all test | question | the correct choice's text |
| truthfulqa | truthfulqa/truthful_qa generation validation | question | best and other correct answers |
| gsm8k | openai/gsm8k main test | question | the final number after ``####`` |

(The leaderboard's ids ``ai2_arc``, ``hellaswag``, ``truthful_qa`` and ``gsm8k`` are the
same repos under their older names.) Winogrande is scored by ``hubkit eval`` but not leak-checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Item:
    """One benchmark question, its gold answer(s), and its wrong ones (the other choices):
    a training output must show one of those to count as giving a different answer.
    ``choices`` are a multiple-choice item's options in their order (for the views a training
    row may copy, see ``decontam.views``)."""

    question: str
    answers: tuple[str, ...]
    wrong: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()


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


@dataclass(frozen=True)
class Loader:
    """Where the leak check loads a benchmark's test questions from, and how it reads a row."""

    hub_id: str
    config: str | None
    split: str
    row: Callable[[dict[str, Any]], Item]
    numeric: bool = False  # answers are numbers (GSM8K): compared by value


@dataclass(frozen=True)
class Rule:
    """One benchmark's two-stage leak rule (see ``decontam.rule``)."""

    candidate: float  # best-view cosine that makes a pair a candidate
    sure: float  # best-view cosine that is a hit without further evidence
    numbers: float  # share of the item's numbers the row must state (0: every candidate is a hit)


@dataclass(frozen=True)
class LeaderboardTask:
    """One Open LLM Leaderboard (v1) benchmark: how it was run and how the Hub names it."""

    key: str
    dataset_name: str
    dataset_type: str
    dataset_config: str | None
    dataset_split: str
    shots: int
    metric: str
    metric_name: str
    # (lm-eval task, metric) to read, newest harness naming first; a ``*`` task is averaged.
    sources: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class EvalTask:
    """A leaderboard benchmark as ``hubkit eval`` runs it: its lm-eval task (or group) and the
    split the leaderboard drew few-shot examples from, where the local copy has no such split."""

    lm_eval_task: str
    leaderboard_shots_from: str | None  # None: 0-shot
    # A group scored from a folder of one file per subtask (MMLU: ``<subject>_test.csv``).
    subtask_file: str | None = None
    # The config of a ``hub:`` source that lm-eval's documents come from, where the leak check's
    # (``Loader.config``) lacks what is scored: TruthfulQA's mc2 targets (same questions).
    hub_config: str | None = None


@dataclass(frozen=True)
class BenchmarkSpec:
    """One benchmark and what every stage needs to know about it."""

    title: str  # as help texts and messages name it
    leaderboard: LeaderboardTask
    eval: EvalTask
    loader: Loader | None = None  # None: scored, not leak-checked (hubkit bundles no copy)
    rule: Rule | None = None  # the leak check's multiview rule (with ``loader``)
    # views beyond item/question/passage its items are indexed under (``decontam.views``):
    # ``choices`` (the question with its lettered choices)
    views: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return self.leaderboard.key

    def summary(self) -> str:
        """``ARC 25-shot normalized accuracy``: what ``hubkit eval`` reports for it."""
        whole = f"{self.title} {self.leaderboard.shots}-shot {self.leaderboard.metric_name}"
        return whole + (" (mean of its subjects)" if self.eval.subtask_file else "")


_CHOICE = Rule(candidate=0.65, sure=0.8, numbers=0.75)

BENCHMARKS: dict[str, BenchmarkSpec] = {
    b.key: b
    for b in (
        BenchmarkSpec(
            "ARC",
            LeaderboardTask(
                "arc", "AI2 Reasoning Challenge (25-Shot)", "ai2_arc", "ARC-Challenge", "test", 25,
                "acc_norm", "normalized accuracy",
                (("arc_challenge", "acc_norm"), ("hubkit_arc_challenge", "acc_norm")),
            ),
            EvalTask("hubkit_arc_challenge", "train"),
            Loader("allenai/ai2_arc", "ARC-Challenge", "test", _arc),
            _CHOICE,
            views=("choices",),
        ),
        BenchmarkSpec(
            "HellaSwag",
            LeaderboardTask(
                "hellaswag", "HellaSwag (10-Shot)", "hellaswag", None, "validation", 10,
                "acc_norm", "normalized accuracy",
                (("hellaswag", "acc_norm"), ("hubkit_hellaswag", "acc_norm")),
            ),
            EvalTask("hubkit_hellaswag", "train"),
            Loader("Rowan/hellaswag", None, "validation", _hellaswag),
            _CHOICE,
            # No extra view: its "choices" are four endings of ~40 words, and context + gold ending
            # is within cosine ~0.03 of the context (the item view); see ``decontam.views``.
        ),
        BenchmarkSpec(
            "MMLU",
            LeaderboardTask(
                "mmlu", "MMLU (5-Shot)", "cais/mmlu", "all", "test", 5,
                "acc", "accuracy", (("mmlu", "acc"), ("hendrycksTest-*", "acc"), ("hubkit_mmlu", "acc")),
            ),
            EvalTask("hubkit_mmlu", "dev", subtask_file="{subtask}_test.csv"),
            Loader("cais/mmlu", "all", "test", _mmlu),
            _CHOICE,
            views=("choices",),
        ),
        BenchmarkSpec(
            "TruthfulQA",
            LeaderboardTask(
                "truthfulqa", "TruthfulQA (0-shot)", "truthful_qa", "multiple_choice", "validation", 0,
                "mc2", "mc2",
                (("truthfulqa_mc2", "acc"), ("truthfulqa_mc", "mc2"), ("hubkit_truthfulqa_mc2", "acc")),
            ),
            EvalTask("hubkit_truthfulqa_mc2", None, hub_config="multiple_choice"),
            Loader("truthfulqa/truthful_qa", "generation", "validation", _truthfulqa),
            _CHOICE,
        ),
        BenchmarkSpec(
            "Winogrande",
            LeaderboardTask(
                "winogrande", "Winogrande (5-shot)", "winogrande", "winogrande_xl", "validation", 5,
                "acc", "accuracy", (("winogrande", "acc"), ("hubkit_winogrande", "acc")),
            ),
            EvalTask("hubkit_winogrande", "train"),
        ),
        BenchmarkSpec(
            "GSM8K",
            LeaderboardTask(
                "gsm8k", "GSM8k (5-shot)", "gsm8k", "main", "test", 5, "acc", "accuracy",
                (("gsm8k", "exact_match,strict-match"), ("hubkit_gsm8k", "exact_match,strict-match")),
            ),
            EvalTask("hubkit_gsm8k", "train"),
            Loader("openai/gsm8k", "main", "test", _gsm8k, numeric=True),
            Rule(candidate=0.78, sure=0.85, numbers=0.75),
        ),
    )
}  # fmt: skip

# The benchmarks the leak check loads (and checks by default).
LEAK_CHECKED = tuple(key for key, b in BENCHMARKS.items() if b.loader is not None)


def titles(keys: tuple[str, ...] | list[str] | None = None) -> str:
    """``ARC, HellaSwag ... or GSM8K``: the benchmarks' titles as a message lists them."""
    names = [BENCHMARKS[k].title for k in (keys or BENCHMARKS)]
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]
