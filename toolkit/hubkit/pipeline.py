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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .artifacts import list_files
from .console import console
from .errors import HubkitError, NotVerified
from .publish import PushResult, RepoType, preflight_push, upload
from .recipe import Recipe

STAGES = ("data-build", "data-check", "train", "merge", "verify", "eval", "cards", "push")
REPOS: tuple[tuple[str, str, RepoType], ...] = (  # (role, hub.KEY, repo type)
    ("dataset", "dataset_repo", "dataset"),
    ("adapter", "adapter_repo", "model"),
    ("merged", "merged_repo", "model"),
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

    def summary(self) -> str:
        """The closing table: time per stage, then repos, commits, sizes and URLs."""
        lines = [f"{'stage':<11} {'status':<9} {'time':>8}  detail"]
        lines += [s.row() for s in self.stages]
        if self.pushes:
            lines += ["", f"{'artifact':<8} {'repo':<40} {'commit':<12} {'sent':>12}  url"]
            for role, push in self.pushes.items():
                commit = push.commit[:12] + ("" if push.created_commit else " =")
                lines.append(
                    f"{role:<8} {push.repo_id:<40} {commit:<12} {push.uploaded_bytes:>11,}B  {push.url}"
                )
        return "\n".join(lines)

    def next_steps(self, serve: str | None = None) -> str:
        """How to load the pushed repos with the stock libraries, at their tags (else commits);
        ``serve``: the local Hub folder, which must be served again for them."""
        from .train import TINY_LLAMA

        (data, data_rev), (adapter, adapter_rev), (merged, merged_rev) = (
            (push.repo_id, push.tag or push.commit) for push in (self.pushes[role] for role, _, _ in REPOS)
        )
        base = self.recipe.model.name_or_path
        if base == TINY_LLAMA:
            base = str(self.recipe.run_dir() / "base-model")
        lines = ["", "Next: load what was pushed"]
        if serve is not None:
            lines += [
                f"  hubkit hub serve --root {serve} --port 8080   # then, in another shell:",
                "  export HF_ENDPOINT=http://127.0.0.1:8080 HF_HUB_DISABLE_XET=1",
            ]
        model = "from transformers import AutoModelForCausalLM as M"
        lines += [
            f"  python -c \"import datasets; print(datasets.load_dataset('{data}', revision='{data_rev}', "
            "split='train'))\"",
            f"  python -c \"{model}; print(M.from_pretrained('{merged}', revision='{merged_rev}'))\"",
            f"  python -c \"{model}; from peft import PeftModel; print(PeftModel.from_pretrained("
            f"M.from_pretrained('{base}'), '{adapter}', revision='{adapter_rev}'))\"",
        ]
        return "\n".join(lines)


def _stamp(folder: Path) -> int | None:
    """When the artifact's manifest was last written: unchanged across a stage means it was kept."""
    manifest = folder / "manifest.json"
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
    unknown = sorted(set(force) - set(STAGES))
    if unknown:
        raise HubkitError(f"--force {unknown[0]}: unknown stage (stages: {', '.join(STAGES)})")
    check_publishable(recipe, push=not dry_run)
    check_trainable(recipe)
    if recipe.merge.config is not None:  # mergekit's own checks of it, before any stage
        from .merge.kit import check_config

        check_config(recipe.merge.config, f"{recipe.source}: merge.config")
    result = PipelineResult(recipe)
    run = recipe.run_dir()

    @contextmanager
    def stage(name: str) -> Iterator[dict[str, Any]]:
        console().begin(name)
        note: dict[str, Any] = {"status": "ran", "detail": ""}
        started = time.perf_counter()
        yield note
        record = StageRecord(name, note["status"], time.perf_counter() - started, note["detail"])
        result.stages.append(record)
        console().end(record.row())

    from .data import build_dataset
    from .decontam import check_recipe

    with stage("data-build") as note:
        before = _stamp(run / "dataset")
        dataset = build_dataset(recipe, run / "dataset", force="data-build" in force)
        note["status"] = "skipped" if _stamp(dataset) == before else "ran"
        note["detail"] = str(dataset)
    with stage("data-check") as note:
        before = _stamp(run / "dataset-clean")
        check = check_recipe(recipe, dataset, run / "dataset-clean", force="data-check" in force)
        assert check.out is not None
        result.artifacts["dataset"] = check.out
        note["status"] = "skipped" if _stamp(check.out) == before else "ran"
        note["detail"] = f"{check.rows_checked} rows, {len(check.hits)} hits, {check.removed} removed"
        report = check.out / "leak_report.md"
        if not check.passed:
            raise HubkitError(f"leak check failed ({note['detail']}); nothing pushed; see {report}")
        if check.hits and recipe.decontam.on_hit == "stop":
            raise HubkitError(
                f"leak check found {len(check.hits)} hit(s) in the data ({note['detail']}); nothing pushed; "
                f"see {report}, fix the sources or set decontam.on_hit: remove"
            )

    from .train import train

    with stage("train") as note:
        trained = train(
            recipe, dataset=check.out, out=run / "adapter", force="train" in force, echo=console().debug
        )
        result.artifacts["adapter"] = trained.out
        note["status"] = "skipped" if trained.skipped else "ran"
        metrics = trained.metrics
        note["detail"] = (
            f"final loss {metrics['loss'][-1]['loss']:.4f}, {metrics['global_step']} steps, "
            f"{metrics['tokens_seen'] / max(metrics['wall_time_s'], 1e-9):,.0f} tokens/s"
            if metrics["loss"]
            else ""
        )

    from .merge import load_registry, merge_adapter, merge_config, merge_models

    registry = load_registry(entries=recipe.merge.taint_registry)
    allowed = [*(merge_ref(recipe, ref) for ref in recipe.merge.allow_unverified), *allow_unverified]
    with stage("merge") as note:
        before = _stamp(run / "merged")
        partnered = bool(recipe.merge.models or recipe.merge.config)
        merged = merge_adapter(
            trained.out,
            run / ("merged-adapter" if partnered else "merged"),
            registry=registry,
            allow_unverified=allowed,
            recipe=recipe.to_dict(),
            force="merge" in force,
        )
        if partnered:
            # The fold's exact check (against base + adapter through peft) must come first: a
            # model merge cannot check the fold, and merge_models refuses an unchecked one.
            _verified(merged)
        if recipe.merge.config is not None:
            merged = merge_config(
                recipe_merge_config(recipe, merged),
                run / "merged",
                source=f"{recipe.source}: merge.config",
                base_dir=recipe.base_dir,
                registry=registry,
                allow_unverified=allowed,
                recipe=recipe.to_dict(),
                force="merge" in force,
            )
        elif recipe.merge.models:
            merged = merge_models(
                [str(merged), *(merge_ref(recipe, ref) for ref in recipe.merge.models)],
                run / "merged",
                weights=recipe.merge.weights or None,
                method=recipe.merge.method,
                base=merge_ref(recipe, recipe.merge.base) if recipe.merge.base else None,
                registry=registry,
                allow_unverified=allowed,
                recipe=recipe.to_dict(),
                force="merge" in force,
            )
        result.artifacts["merged"] = merged
        note["status"] = "skipped" if _stamp(merged) == before else "ran"
        note["detail"] = str(merged)
    with stage("verify") as note:
        summary, ran = _verified(merged, force="verify" in force)
        note["status"] = "ran" if ran else "skipped"
        diff = summary.get("max_abs_logit_diff")
        note["detail"] = "passed" + (f", max |logit diff| {diff:.2e}" if diff is not None else "")

    scores: dict[str, Path] = {}
    compare: dict[str, Path] = {}  # the merged card's other columns (base, adapter on it, ...)
    refused = None
    with stage("eval") as note:  # after verify, before anything is written for the Hub: the eval gate
        note["status"], note["detail"] = "skipped", "no eval.tasks in the recipe"
        if recipe.eval.tasks:
            from .evaluate import evaluate_recipe
            from .train import resolve_base_model

            base = resolve_base_model(recipe).load_from
            inputs = (
                {"merged-adapter": str(run / "merged-adapter")}
                | {ref: merge_ref(recipe, ref) for ref in recipe.merge.models}
                if recipe.merge.models
                else {"base": base}
            )
            evaluation = evaluate_recipe(
                recipe, merged, trained.out, base, inputs, force="eval" in force, echo=echo
            )
            scores = {role: evaluation.results[role].folder for role in ("adapter", "merged")}
            compare = evaluation.compare()
            result.artifacts |= {f"eval-{label}": r.folder for label, r in evaluation.results.items()}
            reused = all(r.reused for r in evaluation.results.values())
            refused = evaluation.refused
            note["status"] = "refused" if refused else "skipped" if reused else "ran"
            note["detail"] = evaluation.detail()
    if refused:
        raise HubkitError(f"eval gate: {refused}; nothing pushed\n{result.summary()}")

    from .cards import write_card

    with stage("cards") as note:
        eval_results = recipe.resolve(recipe.eval.results) if recipe.eval.results else None
        for role, _, _ in REPOS:
            card_scores = None if role == "dataset" else scores.get(role, eval_results)
            write_card(role, result.artifacts[role], card_scores, compare if role == "merged" else None)
        note["detail"] = "README.md in each artifact"

    with stage("push") as note:
        if dry_run:
            note["status"] = "dry-run"
            for role, key, repo_type in REPOS:
                folder, repo = result.artifacts[role], getattr(recipe.hub, key)
                if repo:  # the pre-flight's own checks; those that read the Hub wait for the push
                    preflight_push(folder, repo, repo_type=repo_type, tag=recipe.version, read_hub=False)
                echo(f"would push {folder} ({len(list_files(folder))} files, {_folder_size(folder):,} B)")
                echo(f"    to {repo_type} repo {repo or f'<hub.{key} not set>'} @ {recipe.version}")
        else:
            # Every repo's pre-flight before any upload: a refusal of the last publishes none.
            plans = {
                role: preflight_push(
                    result.artifacts[role],
                    getattr(recipe.hub, key),
                    repo_type=repo_type,
                    tag=recipe.version,
                    endpoint=endpoint,
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
            note["detail"] = ", ".join(p.repo_id for p in result.pushes.values()) + f" ({sent:,} B sent)"
    return result


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
