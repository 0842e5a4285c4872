"""Wall time and items/s of `hubkit eval` against the `lm_eval` command line, same run, same scores.

Builds the seeded tiny Llama of ``hubkit.tiny`` and scores it on the five leaderboard tasks
(ARC 25-shot, HellaSwag 10-shot, MMLU 5-shot, TruthfulQA mc2 0-shot, GSM8K 5-shot) from the
bundled benchmark excerpts, ``--limit`` items per task (MMLU: per subject), twice, each in a
fresh process so both pay their imports and model load:

- hubkit: ``hubkit eval MODEL --benchmark-file ... --limit N`` (its default ``--batch-size auto``);
- baseline: ``lm_eval run --model hf ... --include_path <hubkit's task configs> --metadata ...``
  with the harness's default batch size 1: the same task configs, files and limit.

Then checks that every score of every task is the same in both results files, and prints
wall time, items/s and the ratio. Target: >= 2x.

    .venv/bin/python tests/benchmarks/bench_eval.py [--limit 100] [--dir /tmp] [--tasks ...]

Not collected by pytest (not a test_*.py file).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.resources import files
from pathlib import Path

TARGET = 2.0
TASKS = ["arc", "hellaswag", "mmlu", "truthfulqa", "gsm8k"]


def _bundled() -> dict[str, str]:
    root = Path(str(files("hubkit").joinpath("sample_data/benchmarks")))
    return {
        "arc": str(root / "arc_challenge_test.jsonl"),
        "hellaswag": str(root / "hellaswag_val.txt"),
        "mmlu": str(root / "mmlu"),
        "truthfulqa": str(root / "TruthfulQA.csv"),
        "gsm8k": str(root / "gsm8k_test.jsonl"),
    }


def _run(cmd: list[str], log: Path) -> float:
    start = time.perf_counter()
    with log.open("w") as fh:
        done = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{cmd[0]} failed ({done.returncode}); see {log}")
    return seconds


def _scores(results: dict) -> dict[str, dict[str, float]]:
    return {
        task: {m: v for m, v in entry.items() if isinstance(v, (int, float)) and "stderr" not in m}
        for task, entry in results["results"].items()
    }


def _items(results: dict) -> int:
    return sum(n["effective"] for n in results["n-samples"].values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--dir", default=None, help="Work folder (default: a temporary one, removed).")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-eval-", dir=args.dir))
    try:
        from hubkit.evaluate import TASKS as EVAL_TASKS
        from hubkit.evaluate import task_dir
        from hubkit.tiny import build_tiny_llama, sample_corpus

        model = build_tiny_llama(work / "tiny", sample_corpus())
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
        bench_files = {k: v for k, v in _bundled().items() if k in tasks}
        bin_dir = Path(sys.executable).parent

        hubkit_cmd = [str(bin_dir / "hubkit"), "eval", str(model), "--tasks", ",".join(tasks)]
        hubkit_cmd += [f"--benchmark-file={k}={v}" for k, v in bench_files.items()]
        hubkit_cmd += ["--limit", str(args.limit), "--device", "cpu", "--out", str(work / "hubkit")]
        lm_eval_cmd = [
            str(bin_dir / "lm_eval"), "run", "--model", "hf", "--model_args", f"pretrained={model}",
            "--tasks", ",".join(EVAL_TASKS[k].lm_eval_task for k in tasks),
            "--include_path", str(task_dir()), "--metadata", json.dumps({"benchmark_files": bench_files}),
            "--limit", str(args.limit), "--device", "cpu", "--output_path", str(work / "lm_eval"),
        ]  # fmt: skip
        print(f"tiny Llama, tasks {','.join(tasks)}, --limit {args.limit}, bundled excerpts; work in {work}")
        t_hubkit = _run(hubkit_cmd, work / "hubkit.log")
        print(f"hubkit eval: {t_hubkit:.1f} s")
        t_lm_eval = _run(lm_eval_cmd, work / "lm_eval.log")
        print(f"lm_eval run (batch size 1): {t_lm_eval:.1f} s")

        ours = json.loads((work / "hubkit" / "results.json").read_text())
        theirs = json.loads(next((work / "lm_eval").rglob("results_*.json")).read_text())
        a, b = _scores(ours), _scores(theirs)
        differ = [
            f"{task}.{metric}: hubkit {a[task][metric]} lm_eval {b[task].get(metric)}"
            for task in sorted(a)
            for metric in a[task]
            if not math.isclose(a[task][metric], b.get(task, {}).get(metric, math.nan), rel_tol=0, abs_tol=0)
        ]
        manifest = json.loads((work / "hubkit" / "manifest.json").read_text())
        items = _items(ours)
        assert items == _items(theirs), (items, _items(theirs))
        print()
        print(f"{'task':<11} {'items':>6} {'hubkit items/s':>15}  score")
        for t in manifest["tasks"]:
            rate = t["items_scored"] / t["seconds"]
            print(f"{t['key']:<11} {t['items_scored']:>6} {rate:>15.1f}  {t['score']:.2f}")
        print()
        print(f"{'run':<28} {'wall s':>8} {'items/s':>8}")
        print(f"{'hubkit eval (batch auto)':<28} {t_hubkit:>8.1f} {items / t_hubkit:>8.2f}")
        print(f"{'lm_eval run (batch 1)':<28} {t_lm_eval:>8.1f} {items / t_lm_eval:>8.2f}")
        ratio = t_lm_eval / t_hubkit
        print(f"speed-up {ratio:.2f}x (target >= {TARGET:g}x): {'met' if ratio >= TARGET else 'NOT met'}")
        metrics = sum(len(m) for m in a.values())
        if differ:
            print(f"scores: {len(differ)} of {metrics} differ:")
            print("\n".join(f"  {d}" for d in differ))
        else:
            print(f"scores: all {metrics} metrics of {len(a)} tasks/groups identical in both results files")
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
