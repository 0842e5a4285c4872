"""Labelled leak sets and their scores: recall, false positives and F1 of a detection method.

Shared by tests/test_leak_f1.py and tests/benchmarks/bench_leak_f1.py. Positives are the LLM
Decontaminator's GPT-4 rephrasings (../shared/data/benchmarks/rephrased, empty ones = none,
left out), as training rows with no output; a positive counts as found when it is flagged
against its own item. Negatives, with their real answers as outputs: GSM8K-train questions for
GSM8K, the other two subjects' questions for each MMLU subject; one is a false positive when
it is flagged at all.

Development sets (tuned on): abstract algebra, sociology, GSM8K items 0-659 against GSM8K-train
questions 3,000-5,999. Held out (only reported): US history, GSM8K 660+ against GSM8K-train
questions 0-2,999. ``gsm8k (all)`` is the issue's set: every rephrasing against 0-2,999.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from hubkit.decontam import load_benchmark
from hubkit.decontam.benchmarks import Benchmark
from hubkit.decontam.check import find_hits, method_embedder

SUBJECTS = ("abstract_algebra", "sociology", "high_school_us_history")
HELD_OUT_SUBJECTS = ("high_school_us_history",)
GSM8K_SPLIT = 660  # GSM8K test items below: development; from here: held out


@dataclass
class LeakSet:
    name: str
    role: str  # development / held-out / all
    benchmark: Benchmark
    positives: list[tuple[str, int]]  # (rephrasing, its item)
    negatives: list[tuple[str, str]]  # (question, output)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def rephrased(shared: Path, name: str) -> list[str]:
    """GPT-4 rephrasings, labels like ``Question:`` and answers cut off ("" where there is none)."""
    texts = [row["text"] for row in _jsonl(shared / "benchmarks" / "rephrased" / name)]
    return [re.sub(r"^(Question|Answer):\s*", "", t.split("\nAnswer:")[0].strip()) for t in texts]


def leak_sets(shared: Path, gsm8k_negatives: int = 3000, dev_negatives: int = 3000) -> list[LeakSet]:
    """The sets of the issue's table, split into development and held-out parts
    (``gsm8k_negatives`` held-out and ``dev_negatives`` development GSM8K-train questions)."""
    b = shared / "benchmarks"
    gsm = load_benchmark("gsm8k", b / "gsm8k" / "test.jsonl")
    reph = rephrased(shared, "rephrase_gsm8k.jsonl")
    train = _jsonl(shared / "train" / "gsm8k_train.jsonl")
    held_neg = [(r["question"], r["answer"]) for r in train[:gsm8k_negatives]]
    dev_neg = [(r["question"], r["answer"]) for r in train[3000 : 3000 + dev_negatives]]
    pos = [(t, i) for i, t in enumerate(reph) if t]
    sets = [
        LeakSet("gsm8k 0-659", "development", gsm, [p for p in pos if p[1] < GSM8K_SPLIT], dev_neg),
        LeakSet("gsm8k 660+", "held-out", gsm, [p for p in pos if p[1] >= GSM8K_SPLIT], held_neg),
        LeakSet("gsm8k (all)", "all", gsm, pos, held_neg),
    ]
    subjects = {s: load_benchmark("mmlu", b / "mmlu" / "test" / f"{s}_test.csv") for s in SUBJECTS}
    for subject, bench in subjects.items():
        texts = rephrased(shared, f"{subject}_test_rephrase_english_filtered_question.jsonl")
        negatives = [
            (item.question, item.answers[0]) for other in SUBJECTS if other != subject
            for item in subjects[other].items
        ]  # fmt: skip
        role = "held-out" if subject in HELD_OUT_SUBJECTS else "development"
        sets.append(LeakSet(subject, role, bench, [(t, i) for i, t in enumerate(texts) if t], negatives))
    return sets


@dataclass
class Score:
    found: int
    positives: int
    false_positives: int
    negatives: int

    @property
    def recall(self) -> float:
        return self.found / self.positives

    @property
    def f1(self) -> float:
        flagged = self.found + self.false_positives
        precision = self.found / flagged if flagged else 0.0
        return 2 * precision * self.recall / (precision + self.recall) if self.found else 0.0


def score(
    leak_set: LeakSet, cache_dir: Path | None = None, method: str = "multiview", threshold: float = 0.8
) -> Score:
    """Run ``find_hits`` (the shipped defaults, or ``platypus`` at ``threshold``) on one set,
    embedding as ``check_dataset`` does for ``method`` (cache in ``cache_dir``)."""
    embedder = method_embedder(method, cache_dir=cache_dir, progress=False)  # type: ignore[arg-type]
    pairs = [(t, "") for t, _ in leak_set.positives] + leak_set.negatives
    rows = [{"instruction": q, "input": "", "output": o, "data_source": ""} for q, o in pairs]
    hits = find_hits(rows, [leak_set.benchmark], embedder, method, threshold)  # type: ignore[arg-type]
    n = len(leak_set.positives)
    found = {h["row"] for h in hits if h["row"] < n and h["item"] == leak_set.positives[h["row"]][1]}
    false = {h["row"] for h in hits if h["row"] >= n}
    return Score(len(found), n, len(false), len(leak_set.negatives))
