"""Open LLM Leaderboard (v1) scores read from lm-evaluation-harness results.

``LEADERBOARD_V1`` (the ``leaderboard`` part of ``hubkit.benchmarks``' table) says how each
benchmark was run and how the Hub names it; both ``hubkit eval`` (which writes results) and the
cards (which publish them as ``model-index``) read it, so a score means the same thing in both.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .artifacts import read_json
from .benchmarks import BENCHMARKS, LeaderboardTask, titles
from .errors import HubkitError

if TYPE_CHECKING:
    from huggingface_hub import EvalResult


# How each benchmark was run and how the Hub names it, in the benchmarks' order.
LEADERBOARD_V1: tuple[LeaderboardTask, ...] = tuple(b.leaderboard for b in BENCHMARKS.values())


@dataclass(frozen=True)
class EvalScore:
    """A benchmark score from an lm-eval-harness run, in percent as the leaderboard showed it."""

    task: LeaderboardTask
    value: float
    limit: int | None = None  # scored on the first ``limit`` items only (``hubkit eval --limit``)
    shots_from: str | None = None  # where ``hubkit eval`` drew few-shot examples from

    def to_eval_result(self) -> EvalResult:
        from huggingface_hub import EvalResult

        args = {"num_few_shot": self.task.shots} | ({"limit": self.limit} if self.limit else {})
        return EvalResult(
            task_type="text-generation",
            task_name="Text Generation",
            dataset_type=self.task.dataset_type,
            dataset_name=self.task.dataset_name,
            dataset_config=self.task.dataset_config,
            dataset_split=self.task.dataset_split,
            dataset_args=args,
            metric_type=self.task.metric,
            metric_name=self.task.metric_name,
            metric_value=self.value,
            source_name="lm-evaluation-harness",
            source_url="https://github.com/EleutherAI/lm-evaluation-harness",
        )


def _shots(doc: Mapping[str, Any], task: str) -> set[Any]:
    """The few-shot counts an lm-eval results file records for ``task`` (empty when it records none).

    A task's own config comes first; a group (``mmlu``) has none, so its subtasks' configs
    (``mmlu_*``) count, since newer harnesses write 0 shots for groups in ``n-shot``.
    """
    configs = doc.get("configs") or {}
    if isinstance(configs.get(task), Mapping):
        return {configs[task].get("num_fewshot")} - {None}
    subtasks = {
        c.get("num_fewshot")
        for n, c in configs.items()
        if n.startswith(f"{task}_") and isinstance(c, Mapping)
    }
    if subtasks - {None}:
        return subtasks - {None}
    for value in ((doc.get("n-shot") or {}).get(task), (doc.get("config") or {}).get("num_fewshot")):
        if value is not None:
            return {value}
    return set()


def _score(path: Path, doc: Mapping[str, Any], task: LeaderboardTask) -> EvalScore | None:
    results = doc.get("results") or {}
    for pattern, metric in task.sources:
        names = sorted(n for n in results if fnmatch.fnmatchcase(n, pattern))
        if not names:
            continue
        values = []
        for name in names:
            entry = results[name]
            value = entry.get(f"{metric},none", entry.get(metric)) if isinstance(entry, Mapping) else None
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise HubkitError(f"{path}: results.{name} has no '{metric},none' or '{metric}' score")
            shots = _shots(doc, name)
            if shots - {task.shots}:
                raise HubkitError(
                    f"{path}: {name} was run {'/'.join(map(str, sorted(shots)))}-shot; the card reports "
                    f"{task.dataset_name} (Open LLM Leaderboard v1 settings)"
                )
            values.append(float(value))
        return EvalScore(task, round(100 * sum(values) / len(values), 2))
    return None


def read_results_json(path: str | os.PathLike[str]) -> list[EvalScore]:
    """Leaderboard scores from an lm-eval-harness results JSON.

    Both key styles are read (``acc_norm,none`` and the older ``acc_norm``); MMLU is the
    ``mmlu`` group, or the mean of the ``hendrycksTest-*`` subjects as leaderboard v1 took it.
    A task recorded with another few-shot count than the leaderboard's is refused.
    """
    path = Path(path)
    doc = read_json(path)
    if not isinstance(doc, Mapping) or not isinstance(doc.get("results"), Mapping):
        raise HubkitError(f"{path}: missing field 'results' (an lm-eval-harness results JSON)")
    scores = [s for s in (_score(path, doc, task) for task in LEADERBOARD_V1) if s is not None]
    if not scores:
        raise HubkitError(f"{path}: no {titles()} results in it")
    return scores
