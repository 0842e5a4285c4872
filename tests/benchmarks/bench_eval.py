"""Wall time and items/s of `hubkit eval` against the `lm_eval` command line, same run, same scores.

Builds the seeded tiny Llama of ``hubkit.tiny`` (with a ``--window`` that holds the prompts,
default 4,096) and scores it on the five leaderboard tasks
(ARC 25-shot, HellaSwag 10-shot, MMLU 5-shot, TruthfulQA mc2 0-shot, GSM8K 5-shot) from the
bundled benchmark excerpts, ``--limit`` items per task (MMLU: per subject), twice, each in a
fresh process so both pay their imports and model load:

- hubkit: ``hubkit eval MODEL --benchmark-file ... --limit N`` (its default ``--batch-size auto``);
- baseline: ``lm_eval run --model hf ... --include_path <hubkit's task configs> --metadata ...``
  with the harness's default batch size 1: the same task configs, files and limit.

The two alternate (hubkit, lm_eval, hubkit, lm_eval, ... ``--repeats`` times) so a shared
machine's load falls on both alike, and both run with the same torch thread count
(``OMP_NUM_THREADS``, ``--threads``; 0 = torch's default, one per core): on a CPU that other jobs
also use, extra intra-op threads mostly wait on each other, and batched tensors (which cross
torch's parallel grain) suffer most. Checks that every score of every task is the same in all
results files, and prints wall time, CPU time (user + system, less sensitive to other jobs),
items/s and the ratios of the medians. Target: >= 2x.

"The same" scores: accuracy-type metrics (acc, acc_norm, exact_match: fractions of items)
within 1e-12 (batching reorders float sums, nothing more); TruthfulQA's (its task's ``acc`` is
mc2, a mean of normalised choice probabilities: continuous) within 1e-6, the largest gap
printed: hubkit runs a context shared by several choices once (``hubkit.shared_context``), so
its log-likelihoods differ from lm_eval's at float32 rounding (~1e-7 relative), which moves mc2
but flips no choice.

Then the gated pipeline's case: train-and-push scores the base and the merged model, and the
base's scores are kept by hash, so a re-run (or the next recipe on the same base) scores only the
merged model, where ``lm_eval`` scores both again. The script times hubkit finding the base's
scores (``hubkit eval`` again on the same inputs: "Up to date") and prints hubkit (merged scored +
base found) against lm_eval run twice, taking a merged model of the base's shape to cost what the
base cost on each side (derived from the measured runs, not a separate pipeline run).

    .venv/bin/python tests/benchmarks/bench_eval.py [--limit 100] [--repeats 1] [--threads 1]
        [--dir /tmp] [--tasks ...]

Not collected by pytest (not a test_*.py file).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.resources import files
from pathlib import Path

TARGET = 2.0
SAME = 1e-12  # accuracy-type scores this close are the same: batching reorders float sums, nothing more
CONTINUOUS_SAME = 1e-6  # continuous scores (mc2) this close are the same: log-likelihoods to float32 rounding
CONTINUOUS = ("truthfulqa",)  # the tasks whose scores are continuous: TruthfulQA mc2 (its "acc")
TASKS = ["arc", "hellaswag", "mmlu", "truthfulqa", "gsm8k"]
# The tiny model's window. Its 512-piece tokenizer makes prompts ~3x longer than Llama 2's does
# (ARC's 25 shots: up to ~3,100 pieces), so at hubkit.tiny's 1,024 lm-eval cuts most prompts from
# the left, which no leaderboard run does; 4,096 (Llama 2's window) holds nearly all of them.
WINDOW = 4096


def _bundled() -> dict[str, str]:
    root = Path(str(files("hubkit").joinpath("sample_data/benchmarks")))
    return {
        "arc": str(root / "arc_challenge_test.jsonl"),
        "hellaswag": str(root / "hellaswag_val.txt"),
        "mmlu": str(root / "mmlu"),
        "truthfulqa": str(root / "TruthfulQA.csv"),
        "gsm8k": str(root / "gsm8k_test.jsonl"),
    }


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(cmd: list[str], log: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one command in a fresh process."""
    start, cpu = time.perf_counter(), _cpu()
    with log.open("w") as fh:
        done = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{cmd[0]} failed ({done.returncode}); see {log}")
    return seconds, _cpu() - cpu


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
    parser.add_argument("--repeats", type=int, default=1, help="Runs of each side, alternating.")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of both sides (0: unset).")
    parser.add_argument("--dir", default=None, help="Work folder (default: a temporary one, removed).")
    parser.add_argument(
        "--window",
        type=int,
        default=WINDOW,
        help=f"The tiny model's max_position_embeddings (default {WINDOW}: the prompts fit).",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-eval-", dir=args.dir))
    try:
        from hubkit.evaluate import TASKS as EVAL_TASKS
        from hubkit.evaluate import task_dir
        from hubkit.tiny import build_tiny_llama, sample_corpus

        model = build_tiny_llama(work / "tiny", sample_corpus(), max_position_embeddings=args.window)
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
        bench_files = {k: v for k, v in _bundled().items() if k in tasks}
        bin_dir = Path(sys.executable).parent

        hubkit_cmd = [str(bin_dir / "hubkit"), "eval", str(model), "--tasks", ",".join(tasks)]
        hubkit_cmd += [f"--benchmark-file={k}={v}" for k, v in bench_files.items()]
        hubkit_cmd += ["--limit", str(args.limit), "--device", "cpu", "--out"]
        lm_eval_cmd = [
            str(bin_dir / "lm_eval"), "run", "--model", "hf", "--model_args", f"pretrained={model}",
            "--tasks", ",".join(EVAL_TASKS[k].lm_eval_task for k in tasks),
            "--include_path", str(task_dir()), "--metadata", json.dumps({"benchmark_files": bench_files}),
            "--limit", str(args.limit), "--device", "cpu", "--output_path",
        ]  # fmt: skip
        env = dict(os.environ)
        if args.threads:
            env["OMP_NUM_THREADS"] = str(args.threads)
        threads = args.threads or "torch default"
        print(
            f"tiny Llama (window {args.window}), tasks {','.join(tasks)}, --limit {args.limit},"
            f" bundled excerpts, threads {threads}"
        )
        print(f"work in {work}")
        times: dict[str, list[tuple[float, float]]] = {"hubkit": [], "lm_eval": []}
        for i in range(args.repeats):
            for side, cmd in (("hubkit", hubkit_cmd), ("lm_eval", lm_eval_cmd)):
                out = work / f"{side}-{i}"
                times[side].append(_run([*cmd, str(out)], work / f"{side}-{i}.log", env))
                wall, cpu = times[side][-1]
                print(
                    f"  run {i + 1} {side}: {wall:.1f} s wall, {cpu:.1f} s CPU, load {os.getloadavg()[0]:.1f}"
                )

        ours = [json.loads((work / f"hubkit-{i}" / "results.json").read_text()) for i in range(args.repeats)]
        theirs = [
            json.loads(next((work / f"lm_eval-{i}").rglob("results_*.json")).read_text())
            for i in range(args.repeats)
        ]
        a = _scores(ours[0])
        # |difference| of every metric against every other run (nan: missing there)
        gaps = [
            (abs(a[task][metric] - other.get(task, {}).get(metric, math.nan)), f"{task}.{metric}")
            for other in map(_scores, ours[1:] + theirs)
            for task in sorted(a)
            for metric in a[task]
        ]
        differ = [(gap, name) for gap, name in gaps if not gap == 0]
        manifest = json.loads((work / "hubkit-0" / "manifest.json").read_text())
        items = _items(ours[0])
        assert all(_items(r) == items for r in ours + theirs), [_items(r) for r in ours + theirs]
        print()
        print(f"{'task':<11} {'items':>6} {'hubkit items/s':>15}  score   (run 1)")
        for t in manifest["tasks"]:
            rate = t["items_scored"] / t["seconds"]
            print(f"{t['key']:<11} {t['items_scored']:>6} {rate:>15.1f}  {t['score']:.2f}")
        print()
        wall = {side: statistics.median(w for w, _ in runs) for side, runs in times.items()}
        cpu = {side: statistics.median(c for _, c in runs) for side, runs in times.items()}
        print(
            f"median of {args.repeats}        {'wall s':>8} {'items/s':>8} {'CPU s':>8} {'items/CPU s':>12}"
        )
        for side, label in (("hubkit", "hubkit eval (batch auto)"), ("lm_eval", "lm_eval run (batch 1)")):
            print(
                f"{label:<24} {wall[side]:>8.1f} {items / wall[side]:>8.2f} "
                f"{cpu[side]:>8.1f} {items / cpu[side]:>12.2f}"
            )
        reuse = _run([*hubkit_cmd, str(work / "hubkit-0")], work / "hubkit-reuse.log", env)
        assert "Up to date" in (work / "hubkit-reuse.log").read_text(), "the base's scores were not reused"
        ratio = wall["lm_eval"] / wall["hubkit"]
        print(f"speed-up, wall {ratio:.2f}x, CPU {cpu['lm_eval'] / cpu['hubkit']:.2f}x")
        print(f"target >= {TARGET:g}x (wall): {'met' if ratio >= TARGET else 'NOT met'}")
        print()
        print(
            f"gated pipeline, base + merged (base's scores cached; found in {reuse[0]:.1f} s wall), ", end=""
        )
        print("derived from the runs above:")
        for i, unit in enumerate(("wall", "CPU")):
            times_of = (wall, cpu)[i]
            ours_s, theirs_s = times_of["hubkit"] + reuse[i], 2 * times_of["lm_eval"]
            print(
                f"  {unit}: hubkit {ours_s:.1f} s vs lm_eval twice {theirs_s:.1f} s: {theirs_s / ours_s:.2f}x"
            )
        print()
        runs = 2 * args.repeats
        print(
            f"scores: {len(gaps)} comparisons ({len(gaps) // (runs - 1)} metrics of {len(a)} tasks/groups ",
            end="",
        )
        print(f"against hubkit's run 1 in {runs - 1} other results): {len(gaps) - len(differ)} bit-identical")
        for gap, name in differ:
            print(f"  {name}: differs by {gap:.3g}")
        continuous = {EVAL_TASKS[k].lm_eval_task for k in CONTINUOUS}
        bound = {name: CONTINUOUS_SAME if name.split(".")[0] in continuous else SAME for _, name in gaps}
        too_far = [(gap, name) for gap, name in gaps if not gap <= bound[name]]  # nan (missing) too
        for task in sorted(continuous & set(a)):
            worst = max(gap for gap, name in gaps if name.startswith(f"{task}."))
            print(f"  {task} (continuous): largest gap {worst:.3g}, the same within {CONTINUOUS_SAME:g}")
        if too_far:
            worst, name = max(too_far, key=lambda gap_name: (math.isnan(gap_name[0]), gap_name[0]))
            sys.exit(f"scores differ: {name} by {worst:.3g}: not the same scores")
        if differ:
            print(f"  (accuracy-type metrics within {SAME:g}, continuous ones within their bound: the same)")
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
