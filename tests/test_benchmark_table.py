"""The benchmark table is what the leak check, ``hubkit eval``, the scores and the CLI read, and
each entry has the two files outside the table it needs (task config, document loader)."""

from __future__ import annotations

import re

from click.testing import CliRunner

from hubkit import eval_docs
from hubkit.benchmarks import BENCHMARKS, LEAK_CHECKED
from hubkit.cli import cli
from hubkit.decontam.benchmarks import LOADERS
from hubkit.decontam.rule import RULES
from hubkit.evaluate import TASKS, resolve_tasks, task_dir
from hubkit.recipe import DEFAULT_BENCHMARKS
from hubkit.scores import LEADERBOARD_V1


def test_every_stage_reads_the_table() -> None:
    assert list(TASKS) == [t.key for t in LEADERBOARD_V1] == list(BENCHMARKS)
    assert list(LOADERS) == list(RULES) == DEFAULT_BENCHMARKS == list(LEAK_CHECKED)
    assert LEAK_CHECKED == ("arc", "hellaswag", "mmlu", "truthfulqa", "gsm8k")
    run, skipped = resolve_tasks(None, dict.fromkeys(LEAK_CHECKED, "x"))
    assert run == list(LEAK_CHECKED) and list(skipped) == [k for k in BENCHMARKS if k not in LEAK_CHECKED]
    help_text = " ".join(CliRunner().invoke(cli, ["eval", "--help"]).output.split())
    for spec in BENCHMARKS.values():
        assert " ".join(spec.summary().split()) in help_text


def test_each_benchmark_has_its_task_config_and_document_loader() -> None:
    configs = {p: p.read_text() for p in task_dir().rglob("*") if p.is_file()}
    for key, spec in BENCHMARKS.items():
        name = re.escape(spec.eval.lm_eval_task)
        found = [p for p, text in configs.items() if re.search(rf"^(task|group): {name}$", text, re.M)]
        assert len(found) == 1, key
        if spec.eval.subtask_file is None:  # a group's subtasks name the loader in their template
            assert f"custom_dataset: !function hubkit.eval_docs.{key}\n" in configs[found[0]], key
        assert callable(getattr(eval_docs, key)), key
