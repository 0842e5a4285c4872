"""Leaderboard evaluation: a model (and optionally a LoRA adapter) scored with lm-evaluation-harness
on the Open LLM Leaderboard (v1) tasks, from the same benchmark files (or Hub datasets at pinned
revisions) the leak check read.

``evaluate_model`` loads the model once (lm-eval's ``HFLM``, running each multiple-choice context
once: ``shared_context``; an adapter through peft, not merged),
runs each task through ``lm_eval.simple_evaluate`` with hubkit's task configs (``eval_tasks/``:
the leaderboard's prompts, shots and metrics, reading the benchmarks through ``eval_docs``) and
writes an eval artifact: lm-eval's ``results.json`` and a ``manifest.json`` (``EvalManifest``)
binding the scores to the model's weights, the adapter, the task versions and settings and the
benchmark hashes, the same hashes the leak certificate records. An artifact made from the same
inputs is kept, so a model is scored once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .artifacts import (
    atomic_folder,
    digest_of,
    hash_files,
    is_up_to_date,
    sha256_file,
    write_json,
    write_manifest,
)
from .benchmarks import BENCHMARKS, LEAK_CHECKED, EvalTask
from .errors import HubkitError
from .eval_docs import HUB, hub_rows
from .portable import portable_ref
from .schemas import EVAL, BenchmarkRecord, EvalManifest, ModelRecord, TaskRecord
from .scores import EvalScore, read_results_json

if TYPE_CHECKING:
    from .recipe import Recipe

RESULTS = "results.json"


# The lm-eval task of each benchmark (``hubkit.benchmarks``' table), in the table's order.
TASKS: dict[str, EvalTask] = {key: b.eval for key, b in BENCHMARKS.items()}
CPU_AUTO_BATCH_SIZE = 16  # what --batch-size auto means on a CPU
# Few-shot examples come from the evaluated file (or Hub split) itself, the scored item left out.
SHOTS_FROM_LOCAL = "the evaluated split, the scored item left out"


def task_dir() -> Path:
    """hubkit's lm-eval task configs (pass to ``lm_eval --include_path`` to run them by hand)."""
    return Path(str(files("hubkit").joinpath("eval_tasks")))


def subtask_names(name: str) -> list[str]:
    """A group benchmark's subtasks, as hubkit's configs name them
    (``eval_tasks/<name>/<name>_<subtask>.yaml``)."""
    return sorted(p.stem.removeprefix(f"{name}_") for p in (task_dir() / name).glob(f"{name}_*.yaml"))


def mmlu_subjects() -> list[str]:
    """The 57 MMLU subjects (``eval_tasks/mmlu/mmlu_<subject>.yaml``)."""
    return subtask_names("mmlu")


# --------------------------------------------------------------------------- resolving inputs


def resolve_tasks(
    names: Sequence[str] | None, benchmark_files: Mapping[str, str]
) -> tuple[list[str], dict[str, str]]:
    """The tasks to run and the ones skipped with why. A leak-checked benchmark without a file is
    read where ``data check`` reads it then: the leaderboard's Hub split (``Loader.hub_id``); one
    hubkit does not leak-check (Winogrande) has no Hub source, so by default it runs only when its
    file is given."""
    requested = list(names) if names else list(TASKS)
    unknown = [n for n in requested if n not in TASKS]
    if unknown:
        raise HubkitError(f"unknown task {unknown[0]!r}; known: {', '.join(TASKS)}")
    extra = sorted(set(benchmark_files) - set(TASKS))
    if extra:
        raise HubkitError(f"benchmark file given for unknown task {extra[0]!r}; known: {', '.join(TASKS)}")
    skipped = {}
    run = []
    for name in dict.fromkeys(requested):
        if name not in benchmark_files and BENCHMARKS[name].loader is None:
            if not names:
                skipped[name] = f"no {BENCHMARKS[name].title} file given (--benchmark-file {name}=PATH)"
                continue
            raise HubkitError(f"benchmark {name!r}: no file given; pass --benchmark-file {name}=PATH")
        run.append(name)
    return run, skipped


def _pinned(name: str, source: str) -> str:
    """``hub:ID`` as ``hub:ID@COMMIT``, the commit the Hub serves now (the leak check records the
    same): the benchmark record and lm-eval's documents are then read at that one commit, and the
    manifest names it. Other sources as given."""
    hub_id, _, revision = source.removeprefix(HUB).partition("@")
    if not source.startswith(HUB) or revision:
        return source
    from .decontam.benchmarks import _hub_commit

    commit = _hub_commit(hub_id)
    if commit is None:  # offline or no such dataset: said at once, not after datasets' retries
        raise HubkitError(
            f"benchmark {name!r}: cannot ask the Hub which commit of {hub_id} it serves (offline, or no "
            f"such dataset); give a local copy with --benchmark-file {name}=PATH"
        )
    return f"{HUB}{hub_id}@{commit}"


def _hub_record(name: str, source: str, shots: int) -> BenchmarkRecord:
    """The leak certificate's record of ``hub:ID@REV``, after checking that the rows lm-eval will
    score (``eval_docs.hub_rows``) hold its questions, and enough items per (sub)task."""
    from collections import Counter

    from .decontam.benchmarks import load_benchmark

    spec = BENCHMARKS[name]
    if spec.loader is None:
        raise HubkitError(
            f"benchmark {name!r}: {source}: Hub sources are read for the leak-checked benchmarks "
            f"({', '.join(LEAK_CHECKED)}); give a local file"
        )
    bench = load_benchmark(name, source)
    rows = hub_rows(name, source)
    if spec.eval.hub_config:  # scored from another config: its questions must be the leak check's
        config = f"{source} config {spec.eval.hub_config}"
        try:
            scored = Counter(spec.loader.row(row).question for row in rows)
        except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
            raise HubkitError(
                f"benchmark {name!r}: {config}: rows do not look like {name} ({type(exc).__name__}: {exc})"
            ) from None
        if scored != Counter(item.question for item in bench.items):
            raise HubkitError(
                f"benchmark {name!r}: {config}: not the questions of config {spec.loader.config} "
                "(which the leak check reads)"
            )
    if spec.eval.subtask_file is not None:
        counts = Counter(row.get("subject") for row in rows)
        for subtask in subtask_names(name):
            _enough(name, f"{source} subject {subtask}", counts[subtask], shots)
    else:
        _enough(name, source, len(rows), shots)
    return BenchmarkRecord(**bench.record())


def _benchmark_record(name: str, path: str, shots: int) -> BenchmarkRecord:
    """Hash a task's file (or Hub split) as the leak check does (same loader, same digest) and
    check it holds enough items for the leaderboard's shots plus the scored one."""
    from .decontam.benchmarks import load_benchmark
    from .rows import read_records

    if path.startswith(HUB):
        return _hub_record(name, path, shots)
    spec = BENCHMARKS[name]
    if spec.loader is not None:
        record = load_benchmark(name, path).record()
        bench = BenchmarkRecord(**record)
    else:  # not a leak-check benchmark (winogrande): the file's own bytes pin it
        if not Path(path).is_file():
            raise HubkitError(f"benchmark {name!r}: {path}: file not found")
        bench = BenchmarkRecord(source=path, sha256=sha256_file(path), items=len(read_records(path)))
    if spec.eval.subtask_file is not None:
        folder = Path(path)
        subtasks = subtask_names(name)
        for subtask in subtasks:
            part = folder / spec.eval.subtask_file.format(subtask=subtask)
            if not part.is_file():
                raise HubkitError(
                    f"benchmark {name!r}: {part}: file not found ({spec.title} has {len(subtasks)} subjects)"
                )
            _enough(name, part, len(read_records(part)), shots)
    else:
        _enough(name, Path(path), bench.items, shots)
    return bench


def _enough(name: str, where: str | Path, items: int, shots: int) -> None:
    if items <= shots:
        raise HubkitError(
            f"benchmark {name!r}: {where}: {items} items; {shots}-shot scoring needs at least {shots + 1} "
            "(the shots come from the same items, the scored one left out)"
        )


def _model_record(ref: str, kind: str) -> tuple[Path, ModelRecord]:
    from .merge.checkpoint import model_file_hashes, resolve_model

    folder, revision = resolve_model(ref)
    if (
        kind == "model"
        and (folder / "adapter_config.json").is_file()
        and not (folder / "config.json").is_file()
    ):
        raise HubkitError(
            f"{ref}: a LoRA adapter, not a model; give its base model as MODEL and this folder as --adapter"
        )
    if kind == "adapter":
        if not (folder / "adapter_config.json").is_file():
            raise HubkitError(f"--adapter {ref}: no adapter_config.json (not a peft adapter)")
        # adapter_config.json (r, alpha, targets) changes what is computed as much as the weights
        hashes = {rel: digest for rel, digest in hash_files(folder).items() if rel.startswith("adapter_")}
    else:
        if not (folder / "config.json").is_file():
            raise HubkitError(f"{ref}: no config.json (not a transformers model folder)")
        hashes = model_file_hashes(folder)
    return folder, ModelRecord(name=ref, revision=revision, sha256=digest_of(hashes))


# --------------------------------------------------------------------------- running


@dataclass
class EvalResult:
    """An eval artifact: where it is, its manifest, and whether this call scored it or found it."""

    folder: Path
    manifest: EvalManifest
    reused: bool

    def table(self) -> str:
        lines = [f"{'task':<11} {'shots':>5} {'items':>6} {'items/s':>8}  {'metric':<10} {'score':>6}"]
        for t in self.manifest.tasks:
            rate = t.items_scored / t.seconds if t.seconds else float("nan")
            lines.append(
                f"{t.key:<11} {t.num_fewshot:>5} {t.items_scored:>6} {rate:>8.1f}  "
                f"{t.metric:<10} {t.score:>6.2f}"
            )
        if self.manifest.average is not None:
            lines.append(f"{'average':<11} {'':>5} {'':>6} {'':>8}  {'':<10} {self.manifest.average:>6.2f}")
        for key, why in self.manifest.skipped.items():
            lines.append(f"{key:<11} skipped: {why}")
        if self.manifest.limit is not None:
            lines.append(f"partial: the first {self.manifest.limit} items of each task (--limit)")
        return "\n".join(lines)


def _merge_results(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One lm-eval results document from per-task runs: the per-task tables joined, the run-wide
    fields (config, versions, date) from the last run."""
    merged: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key].update(value)
            else:
                merged[key] = value
    return merged


def default_out(model: str, adapter: str | None) -> Path:
    """``runs/eval/<model>[+<adapter>]``: one folder per thing scored."""
    name = Path(model.rstrip("/")).name + (f"+{Path(adapter.rstrip('/')).name}" if adapter else "")
    return Path("runs") / "eval" / name


@dataclass
class _Plan:
    """Everything checked before a model loads, and the inputs that identify the scores."""

    run: list[str]
    skipped: dict[str, str]
    files: dict[str, str]
    model_dir: Path
    model: ModelRecord
    adapter_dir: Path | None
    adapter: ModelRecord | None
    shots: dict[str, int]
    benches: dict[str, BenchmarkRecord]
    inputs: dict[str, Any]


def _plan(
    model: str,
    adapter: str | None,
    tasks: Sequence[str] | None,
    benchmark_files: Mapping[str, str] | None,
    limit: int | None,
) -> _Plan:
    import lm_eval

    files_ = {k: str(v) for k, v in (benchmark_files or {}).items()}
    if limit is not None and limit < 1:
        raise HubkitError(f"--limit {limit}: must be at least 1")
    run, skipped = resolve_tasks(tasks, files_)
    model_dir, model_record = _model_record(model, "model")
    adapter_dir, adapter_record = _model_record(adapter, "adapter") if adapter else (None, None)
    files_ |= {key: _pinned(key, files_.get(key) or f"{HUB}{BENCHMARKS[key].loader.hub_id}") for key in run}
    shots = {key: BENCHMARKS[key].leaderboard.shots for key in run}
    benches = {key: _benchmark_record(key, files_[key], shots[key]) for key in run}
    inputs = {
        "model": model_record.sha256,
        "adapter": adapter_record.sha256 if adapter_record else None,
        "tasks": {key: benches[key].sha256 for key in run},
        "limit": limit,
        "lm_eval": lm_eval.__version__,
        "task_configs": digest_of({p.name: sha256_file(p) for p in sorted(task_dir().rglob("*yaml"))}),
    }
    return _Plan(
        run, skipped, files_, model_dir, model_record, adapter_dir, adapter_record, shots, benches, inputs
    )


def cache_dir() -> Path:
    """``$HUBKIT_CACHE/eval``: scores of models hubkit did not make (a base), by what they were made from."""
    from .decontam.embed import cache_root

    return cache_root() / "eval"


def evaluate_model(
    model: str,
    *,
    adapter: str | None = None,
    tasks: Sequence[str] | None = None,
    benchmark_files: Mapping[str, str] | None = None,
    limit: int | None = None,
    batch_size: str | int = "auto",
    device: str | None = None,
    out: str | os.PathLike[str] | None = None,
    cache: bool = False,
    force: bool = False,
    echo: Callable[[str], Any] = print,
) -> EvalResult:
    """Score ``model`` (+ ``adapter``) on the leaderboard tasks and write the eval artifact.

    ``benchmark_files`` maps a task (a key of ``hubkit.benchmarks.BENCHMARKS``) to its local
    file (MMLU: the folder of ``<subject>_test.csv``) or to ``hub:ID[@REVISION]``, read as the
    leak check reads it (without a revision: at the commit the Hub serves now, which the
    manifest records). Everything is checked before
    the model loads; an artifact already made from the same model, adapter, files, tasks and
    limit is returned as it is unless ``force``. ``cache`` puts it under ``cache_dir()``, named
    by those inputs, instead of ``out``.
    """
    plan = _plan(model, adapter, tasks, benchmark_files, limit)
    if cache:
        folder = cache_dir() / digest_of(plan.inputs)[:32]
    else:
        folder = Path(out) if out is not None else default_out(model, adapter)
    if not force and is_up_to_date(folder, plan.inputs):
        return EvalResult(folder, EvalManifest.read(folder), reused=True)
    _score(plan, folder, model, adapter, limit, batch_size, device, echo)
    return EvalResult(folder, EvalManifest.read(folder), reused=False)


def _score(
    plan: _Plan,
    folder: Path,
    model: str,
    adapter: str | None,
    limit: int | None,
    batch_size: str | int,
    device: str | None,
    echo: Callable[[str], Any],
) -> None:
    """Load the model once, run each task through ``simple_evaluate``, write the artifact."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from hubkit.shared_context import SharedContextHFLM

    device = device or _default_device()
    if batch_size == "auto" and device == "cpu":
        # lm-eval's auto probes for an out-of-memory error, which a CPU never raises: it would run
        # 5 passes of 64 x max-length tokens per task and always pick 64.
        batch_size = CPU_AUTO_BATCH_SIZE
    started = time.perf_counter()
    echo(f"Loading {model}" + (f" + adapter {adapter}" if adapter else "") + f" on {device}")
    lm = SharedContextHFLM(
        pretrained=str(plan.model_dir),
        peft=str(plan.adapter_dir) if plan.adapter_dir else None,
        batch_size=batch_size,
        device=device,
    )
    manager = TaskManager(
        include_path=str(task_dir()), include_defaults=False, metadata={"benchmark_files": plan.files}
    )
    parts, seconds = [], {}
    for key in plan.run:
        echo(f"{key}: {plan.shots[key]}-shot, {TASKS[key].lm_eval_task}")
        t0 = time.perf_counter()
        parts.append(
            lm_eval.simple_evaluate(
                model=lm,
                tasks=[TASKS[key].lm_eval_task],
                limit=limit,
                task_manager=manager,
                log_samples=False,
            )
        )
        seconds[key] = time.perf_counter() - t0
    results = _merge_results(parts)
    with atomic_folder(folder) as tmp:
        write_json(tmp / RESULTS, results)
        scores = {s.task.key: s for s in read_results_json(tmp / RESULTS)}
        records = []
        for key in plan.run:
            name = TASKS[key].lm_eval_task
            n_samples = results["n-samples"]
            items = sum(v["effective"] for k, v in n_samples.items() if k == name or k.startswith(f"{name}_"))
            records.append(
                TaskRecord(
                    key=key,
                    lm_eval_task=name,
                    version=str(results["versions"].get(name, _group_version(results, name))),
                    num_fewshot=plan.shots[key],
                    shots_from=SHOTS_FROM_LOCAL if plan.shots[key] else None,
                    leaderboard_shots_from=TASKS[key].leaderboard_shots_from,
                    items_scored=items,
                    seconds=round(seconds[key], 3),
                    metric=scores[key].task.metric,
                    score=scores[key].value,
                    benchmark=plan.benches[key],
                )
            )
        values = [r.score for r in records]
        write_manifest(
            tmp,
            EVAL,
            plan.inputs,
            model=plan.model.model_dump(),
            adapter=plan.adapter.model_dump() if plan.adapter else None,
            tasks=[r.model_dump() for r in records],
            skipped=plan.skipped,
            limit=limit,
            average=round(sum(values) / len(values), 2) if values else None,
            lm_eval_version=lm_eval.__version__,
            batch_size=str(batch_size),
            device=device,
            wall_time_s=round(time.perf_counter() - started, 3),
        )
        EvalManifest.read(tmp)  # what was written reads back as an eval manifest, or nothing lands


def _group_version(results: Mapping[str, Any], name: str) -> Any:
    """A group's version (MMLU): lm-eval records the subtasks' versions, all the same."""
    versions = {v for k, v in results["versions"].items() if k.startswith(f"{name}_")}
    return versions.pop() if len(versions) == 1 else "mixed"


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def artifact_scores(folder: str | os.PathLike[str]) -> list[EvalScore]:
    """The leaderboard scores of an eval artifact, for a card's ``model-index``: read from its
    ``results.json`` (whose hash must be the manifest's) and marked partial after ``--limit``."""
    from dataclasses import replace

    folder = Path(folder)
    manifest = EvalManifest.read(folder)
    results = folder / RESULTS
    if not results.is_file() or sha256_file(results) != manifest.files.get(RESULTS):
        raise HubkitError(f"{results}: missing or changed since `hubkit eval` wrote it (sha256 differs)")
    shots_from = {t.key: t.shots_from for t in manifest.tasks}
    return [
        replace(score, limit=manifest.limit, shots_from=shots_from.get(score.task.key))
        for score in read_results_json(results)
    ]


def read_eval_results(path: str | os.PathLike[str]) -> list[EvalScore]:
    """Leaderboard scores from an lm-eval-harness results JSON, or a ``hubkit eval`` artifact folder."""
    return artifact_scores(path) if Path(path).is_dir() else read_results_json(path)


# --------------------------------------------------------------------------- in train-and-push


@dataclass
class RecipeEval:
    """The eval stage of train-and-push: each model's eval artifact, and the gate's verdict."""

    results: dict[str, EvalResult]  # "merged", "adapter", then each merge input by name
    refused: str | None  # why the eval gate stops the push (None: passed, or no gate)

    def detail(self) -> str:
        """Averages for the summary table, the merged model's first."""
        parts = []
        for label, result in self.results.items():
            avg = result.manifest.average
            parts.append(f"{label} {'-' if avg is None else f'{avg:.2f}'}" + (" =" if result.reused else ""))
        return "average " + ", ".join(parts) + (f"; REFUSED: {self.refused}" if self.refused else "")

    def compare(self) -> dict[str, Path]:
        """The merged card's other columns, as the paper's tables: each merge input (a local
        folder by its name, never its path), then the adapter on its base."""
        own = ("merged", "adapter")
        inputs = {portable_ref(label): r.folder for label, r in self.results.items() if label not in own}
        return inputs | {"base + adapter": self.results["adapter"].folder}


def recipe_benchmark_files(recipe: Recipe) -> dict[str, str]:
    """The files the recipe's leak check read (``decontam.benchmark_files``) and ``eval.benchmark_files``."""
    from .decontam.check import _recipe_ref

    named = {**recipe.decontam.benchmark_files, **recipe.eval.benchmark_files}
    return {k: _recipe_ref(recipe, v) for k, v in named.items() if k in TASKS}


def evaluate_recipe(
    recipe: Recipe,
    merged: Path,
    adapter: Path,
    base: str,
    merge_inputs: Mapping[str, str],
    *,
    force: bool = False,
    echo: Callable[[str], Any] = print,
) -> RecipeEval:
    """Score the merged model, the adapter on its base, and each merge input (``merge_inputs``:
    name -> model; models hubkit did not make are cached by hash, so a re-run does not score
    them again), then apply ``eval.gate``: the merged average may be at most ``max_drop``
    points below the best input's."""
    section = recipe.eval
    options = {
        "tasks": section.tasks,
        "benchmark_files": recipe_benchmark_files(recipe),
        "limit": section.limit,
        "batch_size": section.batch_size,
        "device": section.device,
        "echo": echo,
    }
    out = recipe.run_dir() / "eval"
    results = {
        "merged": evaluate_model(str(merged), out=out / "merged", force=force, **options),
        "adapter": evaluate_model(base, adapter=str(adapter), out=out / "adapter", force=force, **options),
    }
    if section.gate is None:
        return RecipeEval(results, None)
    for name, ref in merge_inputs.items():
        results[name] = evaluate_model(ref, cache=True, **options)
    merged_avg = results["merged"].manifest.average
    best_name = max(merge_inputs, key=lambda n: results[n].manifest.average or 0.0)
    best = results[best_name].manifest.average
    refused = None
    if merged_avg is not None and best is not None and best - merged_avg > section.gate.max_drop:
        refused = (
            f"merged average {merged_avg:.2f} is {best - merged_avg:.2f} points below {best_name}'s "
            f"{best:.2f} (eval.gate.max_drop {section.gate.max_drop:g})"
        )
    return RecipeEval(results, refused)
