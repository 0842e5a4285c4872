"""train-and-push: every stage of a recipe in order, gates before the first byte is pushed.

data build -> data check -> train -> merge -> verify -> eval -> cards -> push. Each stage writes an
artifact folder under ``runs/<name>/`` and keeps one already made from the same inputs, so
a re-run after a crash resumes where it stopped; ``force`` redoes the stages it names. The
recipe's cards, pushes and training settings are checked before the first stage. A failing
leak check, a refusing taint gate, a failing equivalence check or eval gate raises before anything is
pushed, as does any repo's push pre-flight (all three run before the first upload), and
each push is one commit, so every repo is either at its new commit whole or untouched.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .artifacts import list_files
from .cards import CARD_KINDS, write_card
from .console import console
from .errors import HubkitError, NotVerified
from .publish import PushResult, RepoType, preflight_push, upload
from .recipe import Recipe
from .schemas import MANIFEST, DatasetManifest

if TYPE_CHECKING:
    from .evaluate import RecipeEval

# (role, hub.KEY, repo type) of each artifact published, from the card kinds' table
REPOS: tuple[tuple[str, str, RepoType], ...] = tuple(
    (k.name, k.hub_key, k.repo_type) for k in CARD_KINDS.values()
)


@dataclass
class StageRecord:
    """One stage's outcome for the summary table."""

    name: str
    status: str
    seconds: float
    detail: str = ""

    def row(self) -> str:
        """Its line in the summary table (and as the stage ends)."""
        return f"{self.name:<11} {self.status:<9} {self.seconds:>7.1f}s  {self.detail}"


@dataclass
class PipelineResult:
    """The artifacts made, what each stage did, and what was pushed where."""

    recipe: Recipe
    artifacts: dict[str, Path] = field(default_factory=dict)
    stages: list[StageRecord] = field(default_factory=list)
    pushes: dict[str, PushResult] = field(default_factory=dict)
    evaluation: RecipeEval | None = None  # the eval stage's, when the recipe has eval.tasks

    def summary(self) -> str:
        """The closing table: time per stage, the scores, then repos, commits, sizes and URLs."""
        lines = [f"{'stage':<11} {'status':<9} {'time':>8}  detail"]
        lines += [s.row() for s in self.stages]
        if scores := self.scores():
            lines += ["", *scores]
        if self.pushes:
            lines += ["", f"{'artifact':<8} {'repo':<40} {'commit':<12} {'sent':>12}  url"]
            for role, push in self.pushes.items():
                commit = push.commit[:12] + ("" if push.created_commit else " =")
                lines.append(
                    f"{role:<8} {push.repo_id:<40} {commit:<12} {push.uploaded_bytes:>11,}B  {push.url}"
                )
        return "\n".join(lines)

    def scores(self) -> list[str]:
        """The eval stage's scores (percent): one row per model, its average then each task
        (none when the stage did not run)."""
        if self.evaluation is None:
            return []
        results = self.evaluation.results
        keys = list(dict.fromkeys(t.key for r in results.values() for t in r.manifest.tasks))
        columns = ["average", *keys]
        width = max(len("model"), *map(len, results))

        def row(label: str, cells: list[str]) -> str:
            return f"{label:<{width}}" + "".join(
                f" {c:>{max(len(k), 6)}}" for k, c in zip(columns, cells, strict=True)
            )

        lines = [row("model", columns)]
        for label, result in results.items():
            got = {t.key: f"{t.score:.2f}" for t in result.manifest.tasks}
            if result.manifest.average is not None:
                got["average"] = f"{result.manifest.average:.2f}"
            lines.append(row(label, [got.get(k, "-") for k in columns]))
        limits = {r.manifest.limit for r in results.values()} - {None}
        if limits:
            lines.append(f"partial: at most {max(limits)} items per task (eval.limit)")
        return lines

    def next_steps(self, serve: str | None = None) -> str:
        """How to load the pushed repos with the stock libraries and re-derive their claims with
        ``hubkit verify``, at their tags (else commits); ``serve``: the local Hub folder, which must
        be served again for them. Local folders are named relative to the working directory."""
        from .train import TINY_LLAMA

        (data, data_rev), (adapter, adapter_rev), (merged, merged_rev) = (
            (push.repo_id, push.tag or push.commit) for push in (self.pushes[role] for role, _, _ in REPOS)
        )
        base = self.recipe.model.name_or_path
        if base == TINY_LLAMA:
            base = str(self.recipe.run_dir() / "base-model")
        elif Path(folder := merge_ref(self.recipe, base)).is_dir():
            base = os.path.relpath(folder)
        lines = ["", "Next: load what was pushed"]
        if serve is not None:
            lines += [
                f"  hubkit hub serve --root {os.path.relpath(serve)} --port 8080   # then, in another shell:",
                "  export HF_ENDPOINT=http://127.0.0.1:8080 HF_HUB_DISABLE_XET=1",
            ]
        model = "from transformers import AutoModelForCausalLM as M"
        lines += [
            f"  python -c \"import datasets; print(datasets.load_dataset('{data}', revision='{data_rev}', "
            "split='train'))\"",
            f"  python -c \"{model}; print(M.from_pretrained('{merged}', revision='{merged_rev}'))\"",
            f"  python -c \"{model}; from peft import PeftModel; print(PeftModel.from_pretrained("
            f"M.from_pretrained('{base}'), '{adapter}', revision='{adapter_rev}'))\"",
            "Then re-derive each card's claims from the repo's files:",
            f"  hubkit verify dataset {data} --revision {data_rev}",
            f"  hubkit verify adapter {adapter} --revision {adapter_rev} "
            f"--dataset {data} --dataset-revision {data_rev}",
            f"  hubkit verify merged {merged} --revision {merged_rev}",
        ]
        return "\n".join(lines)


def _stamp(folder: Path) -> int | None:
    """When the artifact's manifest was last written: unchanged across a stage means it was kept."""
    manifest = folder / MANIFEST
    return manifest.stat().st_mtime_ns if manifest.is_file() else None


def _folder_size(folder: Path) -> int:
    return sum((folder / rel).stat().st_size for rel in list_files(folder))


def _verified(folder: Path, force: bool = False) -> tuple[dict[str, Any], bool]:
    """(verification summary, whether the check ran): a merged model is checked only when it
    has no passing check for its current weights (or ``force``), so a re-run resumes; a failing
    check raises."""
    from .merge import require_verified, verify_merge

    if not force:
        try:
            return require_verified(folder), False
        except NotVerified:
            pass
    verify_merge(folder)
    return require_verified(folder), True


def check_publishable(recipe: Recipe, push: bool = True) -> None:
    """What the cards and the pushes need from the recipe, checked before any stage runs:
    finding out after training would waste the run."""
    if push:
        for _, key, _ in REPOS:
            if not getattr(recipe.hub, key):
                raise HubkitError(f"{recipe.source}: hub.{key} is required to push (or use --dry-run)")
    for i, source in enumerate(recipe.data.sources):
        if not source.license:
            raise HubkitError(
                f"{recipe.source}: data.sources[{i}].license is required by the dataset card "
                "(a license id such as mit, or other)"
            )
    if not recipe.hub.license:
        raise HubkitError(f"{recipe.source}: hub.license is required by the model cards (e.g. llama2, mit)")


def check_trainable(recipe: Recipe) -> None:
    """The training settings, checked before any stage runs: a typo'd key or a value TRL
    refuses would otherwise surface at the train stage, after the data build and the leak
    check. Nothing is downloaded and no weights load."""
    from .train import build_sft_config

    with tempfile.TemporaryDirectory(prefix="hubkit-check-") as tmp:
        build_sft_config(recipe, tmp)


def merge_ref(recipe: Recipe, ref: str) -> str:
    """A merge input named by the recipe: a folder relative to the recipe file when there is
    one, like every other recipe path, else the name as is (a Hub id)."""
    folder = recipe.resolve(os.path.expanduser(ref))
    return str(folder) if folder.is_dir() else ref


def recipe_merge_config(recipe: Recipe, fold: Path) -> dict[str, Any]:
    """The recipe's mergekit configuration with ``hubkit:fold`` and ``hubkit:base`` named by the
    folder (or Hub id and commit) they stand for."""
    from .merge.kit import BASE, FOLD, rename_models
    from .train import resolve_base_model

    base = resolve_base_model(recipe)
    base_ref = base.load_from if base.local else f"{base.load_from}@{base.revision}"
    return rename_models(recipe.merge.config or {}, {FOLD: str(Path(fold).resolve()), BASE: base_ref})


def _check_before_any_stage(recipe: Recipe, force: Sequence[str], dry_run: bool) -> None:
    """The --force names, what the cards and pushes need, the training settings and the
    mergekit configuration: checked before the first stage, so a typo does not waste a run."""
    unknown = sorted(set(force) - set(STAGES))
    if unknown:
        raise HubkitError(f"--force {unknown[0]}: unknown stage (stages: {', '.join(STAGES)})")
    check_publishable(recipe, push=not dry_run)
    check_trainable(recipe)
    if recipe.merge.config is not None:  # mergekit's own checks of it, before any stage
        from .merge.kit import check_config

        check_config(recipe.merge.config, f"{recipe.source}: merge.config")


@dataclass
class _Run:
    """What the stages of one train-and-push share: the recipe, the options, the result so far
    (its ``artifacts`` are the stages' outputs) and what a later stage reads from an earlier one."""

    recipe: Recipe
    endpoint: str | None
    dry_run: bool
    allow_unverified: Sequence[str]
    echo: Callable[[str], None]
    result: PipelineResult = field(init=False)
    dir: Path = field(init=False)  # runs/<name>/
    dataset: Path | None = None  # data-build's folder, before the leak check
    refused: str | None = None  # why a gate stops the run once its stage is in the summary

    def __post_init__(self) -> None:
        self.result = PipelineResult(self.recipe)
        self.dir = self.recipe.run_dir()


# A stage's (status, detail) for its summary row; status None: "skipped" when the step left its
# artifact's manifest as it was, else "ran".
Outcome = tuple[str | None, str]


def _data_build(run: _Run, force: bool) -> Outcome:
    from .data import build_dataset

    run.dataset = build_dataset(run.recipe, run.dir / "dataset", force=force)
    built = DatasetManifest.read(run.dataset)
    dedup = built.dedup
    removed = f" ({dedup.removed_exact + dedup.removed_near} duplicates removed)" if dedup else ""
    return None, f"{built.rows} rows{removed}"


def _data_check(run: _Run, force: bool) -> Outcome:
    """The leak check; a failed one, or a hit with ``decontam.on_hit: stop``, stops the run."""
    from .decontam import check_recipe
    from .decontam.check import REPORT_MD

    assert run.dataset is not None
    recipe = run.recipe
    check = check_recipe(recipe, run.dataset, run.dir / "dataset-clean", force=force)
    assert check.out is not None
    run.result.artifacts["dataset"] = check.out
    detail = f"{check.rows_checked} rows, {len(check.hits)} hits, {check.removed} removed"
    report = check.out / REPORT_MD
    if not check.passed:
        raise HubkitError(f"leak check failed ({detail}); nothing pushed; see {report}")
    if check.hits and recipe.decontam.on_hit == "stop":
        raise HubkitError(
            f"leak check found {len(check.hits)} hit(s) in the data ({detail}); nothing pushed; "
            f"see {report}, fix the sources or set decontam.on_hit: remove"
        )
    return None, detail


def _train(run: _Run, force: bool) -> Outcome:
    from .train import train

    dataset = run.result.artifacts["dataset"]
    trained = train(run.recipe, dataset=dataset, out=run.dir / "adapter", force=force, echo=console().debug)
    run.result.artifacts["adapter"] = trained.out
    metrics = trained.metrics
    detail = (
        f"final loss {metrics['loss'][-1]['loss']:.4f}, {metrics['global_step']} steps, "
        f"{metrics['tokens_seen'] / max(metrics['wall_time_s'], 1e-9):,.0f} tokens/s"
        if metrics["loss"]
        else ""
    )
    return "skipped" if trained.skipped else "ran", detail


def _merge(run: _Run, force: bool) -> Outcome:
    """Fold the adapter into its base, then merge the fold with the recipe's partner models
    (``merge.models`` or ``merge.config``), each behind the taint gate."""
    from .merge import load_registry, merge_adapter, merge_config, merge_models

    recipe, adapter = run.recipe, run.result.artifacts["adapter"]
    registry = load_registry(entries=recipe.merge.taint_registry)
    allowed = [*(merge_ref(recipe, ref) for ref in recipe.merge.allow_unverified), *run.allow_unverified]
    partnered = bool(recipe.merge.models or recipe.merge.config)
    merged = merge_adapter(
        adapter,
        run.dir / ("merged-adapter" if partnered else "merged"),
        registry=registry,
        allow_unverified=allowed,
        recipe=recipe.to_dict(),
        force=force,
    )
    if partnered:
        # The fold's exact check (against base + adapter through peft) must come first: a
        # model merge cannot check the fold, and merge_models refuses an unchecked one.
        _verified(merged)
    if recipe.merge.config is not None:
        merged = merge_config(
            recipe_merge_config(recipe, merged),
            run.dir / "merged",
            source=f"{recipe.source}: merge.config",
            base_dir=recipe.base_dir,
            registry=registry,
            allow_unverified=allowed,
            recipe=recipe.to_dict(),
            force=force,
        )
    elif recipe.merge.models:
        merged = merge_models(
            [str(merged), *(merge_ref(recipe, ref) for ref in recipe.merge.models)],
            run.dir / "merged",
            weights=recipe.merge.weights or None,
            method=recipe.merge.method,
            base=merge_ref(recipe, recipe.merge.base) if recipe.merge.base else None,
            registry=registry,
            allow_unverified=allowed,
            recipe=recipe.to_dict(),
            force=force,
        )
    run.result.artifacts["merged"] = merged
    return None, str(merged)


def _verify(run: _Run, force: bool) -> Outcome:
    summary, ran = _verified(run.result.artifacts["merged"], force=force)
    diff = summary.get("max_abs_logit_diff")
    detail = "passed" + (f", max |logit diff| {diff:.2e}" if diff is not None else "")
    return "ran" if ran else "skipped", detail


def _eval(run: _Run, force: bool) -> Outcome:
    """After verify, before anything is written for the Hub: the eval gate."""
    recipe, result = run.recipe, run.result
    merged, adapter = result.artifacts["merged"], result.artifacts["adapter"]
    if not recipe.eval.tasks:
        return "skipped", "no eval.tasks in the recipe"
    from .evaluate import evaluate_recipe
    from .train import resolve_base_model

    base = resolve_base_model(recipe).load_from
    inputs = (
        {"merged-adapter": str(run.dir / "merged-adapter")}
        | {ref: merge_ref(recipe, ref) for ref in recipe.merge.models}
        if recipe.merge.models
        else {"base": base}
    )
    evaluation = evaluate_recipe(recipe, merged, adapter, base, inputs, force=force, echo=run.echo)
    result.evaluation = evaluation
    result.artifacts |= {f"eval-{label}": r.folder for label, r in evaluation.results.items()}
    reused = all(r.reused for r in evaluation.results.values())
    if evaluation.refused:
        run.refused = f"eval gate: {evaluation.refused}"
    return "refused" if evaluation.refused else "skipped" if reused else "ran", evaluation.detail()


def _cards(run: _Run, force: bool) -> Outcome:
    """Each artifact's README.md, with the eval stage's scores (or ``eval.results``)."""
    recipe, evaluation = run.recipe, run.result.evaluation
    eval_results = recipe.resolve(recipe.eval.results) if recipe.eval.results else None
    for role, _, _ in REPOS:
        if role == "dataset":
            write_card(role, run.result.artifacts[role])
        elif evaluation is None:
            write_card(role, run.result.artifacts[role], eval_results)
        else:  # the eval stage's scores; the merged card shows its inputs' beside them
            compare = evaluation.compare() if role == "merged" else None
            write_card(role, run.result.artifacts[role], evaluation.results[role].folder, compare)
    return "ran", "README.md in each artifact"


def _push(run: _Run, force: bool) -> Outcome:
    """Every repo's pre-flight, then one commit per repo; a dry run lists what would be pushed."""
    recipe, result, echo = run.recipe, run.result, run.echo
    if run.dry_run:
        for role, key, repo_type in REPOS:
            folder, repo = result.artifacts[role], getattr(recipe.hub, key)
            if repo:  # the pre-flight's own checks; those that read the Hub wait for the push
                preflight_push(folder, repo, repo_type=repo_type, tag=recipe.version, read_hub=False)
            echo(f"would push {folder} ({len(list_files(folder))} files, {_folder_size(folder):,} B)")
            echo(f"    to {repo_type} repo {repo or f'<hub.{key} not set>'} @ {recipe.version}")
        return "dry-run", ""
    # Every repo's pre-flight before any upload: a refusal of the last publishes none.
    plans = {
        role: preflight_push(
            result.artifacts[role],
            getattr(recipe.hub, key),
            repo_type=repo_type,
            tag=recipe.version,
            endpoint=run.endpoint,
        )
        for role, key, repo_type in REPOS
    }
    for role, plan in plans.items():
        result.pushes[role] = upload(
            plan,
            private=recipe.hub.private,
            commit_message=f"{recipe.name} {recipe.version}: {role} (hubkit)",
        )
    sent = sum(p.uploaded_bytes for p in result.pushes.values())
    return "ran", ", ".join(p.repo_id for p in result.pushes.values()) + f" ({sent:,} B sent)"


@dataclass(frozen=True)
class Stage:
    """A train-and-push stage: its name (the ``--force`` choice, its header and its summary row),
    the step that runs it (given whether it is forced), and the artifact folder under
    ``runs/<name>/`` whose manifest, left as it was by the step, means the stage was skipped
    (None: the step says itself, e.g. train from its inputs' hash, verify from verification.json)."""

    name: str
    step: Callable[[_Run, bool], Outcome]
    folder: str | None = None


PIPELINE: tuple[Stage, ...] = (
    Stage("data-build", _data_build, "dataset"),
    Stage("data-check", _data_check, "dataset-clean"),
    Stage("train", _train),
    Stage("merge", _merge, "merged"),
    Stage("verify", _verify),
    Stage("eval", _eval),
    Stage("cards", _cards),
    Stage("push", _push),
)
STAGES = tuple(stage.name for stage in PIPELINE)


def _run_stage(stage: Stage, run: _Run, force: bool) -> None:
    """One stage between its header and its result line, timed, its row added to the summary."""
    console().begin(stage.name)
    started = time.perf_counter()
    before = _stamp(run.dir / stage.folder) if stage.folder else None
    status, detail = stage.step(run, force)
    if status is None:
        assert stage.folder is not None
        status = "skipped" if _stamp(run.dir / stage.folder) == before else "ran"
    record = StageRecord(stage.name, status, time.perf_counter() - started, detail)
    run.result.stages.append(record)
    console().end(record.row())


def train_and_push(
    recipe: Recipe,
    *,
    endpoint: str | None = None,
    dry_run: bool = False,
    force: Sequence[str] = (),
    allow_unverified: Sequence[str] = (),
    echo: Callable[[str], None] = print,
) -> PipelineResult:
    """Run the whole recipe and publish its dataset, adapter and merged model (three repos).

    ``dry_run`` does everything except pushing and lists what would be pushed.
    """
    _check_before_any_stage(recipe, force, dry_run)
    run = _Run(recipe, endpoint, dry_run, allow_unverified, echo)
    for stage in PIPELINE:
        _run_stage(stage, run, force=stage.name in force)
        if run.refused:
            raise HubkitError(f"{run.refused}; nothing pushed\n{run.result.summary()}")
    return run.result


def load_back(result: PipelineResult, prompt: str | None = None) -> dict[str, Any]:
    """Load the three pushed repos with the stock libraries and check them against local.

    The dataset must give back the local rows, and the merged model and the adapter (through
    peft, on its base) the local ones' logits exactly. Returns a generation to show.
    """
    import datasets
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .prompts import format_prompt
    from .train import resolve_base_model

    recipe, pushes = result.recipe, result.pushes
    rows = datasets.load_dataset(pushes["dataset"].repo_id, revision=pushes["dataset"].commit, split="train")
    local_rows = datasets.Dataset.from_parquet(str(result.artifacts["dataset"] / "data.parquet"))
    if rows.to_list() != local_rows.to_list():
        raise HubkitError(f"{pushes['dataset'].repo_id}: rows loaded back differ from the local dataset")

    merged_id, merged_rev = pushes["merged"].repo_id, pushes["merged"].commit
    tokenizer = AutoTokenizer.from_pretrained(merged_id, revision=merged_rev)
    remote = AutoModelForCausalLM.from_pretrained(merged_id, revision=merged_rev).eval()
    local = AutoModelForCausalLM.from_pretrained(result.artifacts["merged"]).eval()
    text = prompt or format_prompt(
        {"instruction": "What is 12 + 30?", "input": ""}, recipe.data.prompt_template
    )
    ids = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        diff = float((remote(**ids).logits - local(**ids).logits).abs().max())
        if diff != 0.0:
            raise HubkitError(
                f"{merged_id}: reloaded merged model's logits differ from local (max {diff:.3g})"
            )
        base = AutoModelForCausalLM.from_pretrained(resolve_base_model(recipe).load_from)
        adapter_id = pushes["adapter"].repo_id
        adapter = PeftModel.from_pretrained(base, adapter_id, revision=pushes["adapter"].commit).eval()
        pushed = adapter(**ids).logits
        adapter.load_adapter(str(result.artifacts["adapter"]), adapter_name="local")
        adapter.set_adapter("local")
        if not torch.equal(pushed, adapter(**ids).logits):
            raise HubkitError(f"{adapter_id}: reloaded adapter's logits differ from the local adapter's")
        out = remote.generate(**ids, max_new_tokens=24, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    generation = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    return {
        "dataset_rows": len(rows),
        "merged_logits_equal": True,
        "adapter_logits_equal": True,
        "prompt": text,
        "generation": generation,
    }
