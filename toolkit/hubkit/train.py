"""Training: a recipe and a checked dataset artifact in, a LoRA adapter artifact out.

TRL's ``SFTTrainer`` with a peft ``LoraConfig`` does the training: the recipe's ``training``
section is passed to ``SFTConfig`` as is, rows become TRL prompt-completion examples (the
Alpaca prompt), so TRL masks the prompt out of the loss, appends EOS and packs. hubkit adds
what TRL leaves to the caller: refusing data without a passing leak certificate, checking
the base model and the data before any weights load, resuming from the last complete
checkpoint, and writing the adapter folder atomically with its metrics and provenance.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
import shutil
import time
import types
import typing
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__, schemas
from .artifacts import (
    atomic_folder,
    digest_of,
    hash_files,
    is_up_to_date,
    read_json,
    sha256_file,
    write_json,
    write_manifest,
)
from .attention import SDPA_VARLEN, register_sdpa_varlen
from .console import console
from .errors import HubkitError, InputNotFound, hub_errors
from .portable import portable_ref, relative_to_artifact, remember_location
from .prompts import to_prompt_completion
from .provenance import load_leak_certificate, require_passing_certificate
from .recipe import LoraSection, Recipe
from .rows import read_dataset
from .schemas import DATA_FILE

if TYPE_CHECKING:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import PretrainedConfig, PreTrainedModel, TrainerCallback
    from trl import SFTConfig, SFTTrainer

TINY_LLAMA = "hubkit:tiny-llama"
LIBRARIES = ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "huggingface_hub")
# Set by hubkit from the recipe and the command line, so the recipe's training section may not.
# Trainer would push checkpoints itself (past the credential scan and hub.private) or resume
# from a path of its own; hubkit does both, so these are its to set.
_OWNED_TRAINING_KEYS = {
    "output_dir": "--out",
    "max_length": "data.max_length",
    "push_to_hub": "the hub section and `hubkit push`",
    "hub_model_id": "hub.adapter_repo",
    "resume_from_checkpoint": "nothing: hubkit resumes from <out>.checkpoints itself",
}
# Trainer.save_model output that is not part of an adapter artifact (a pickle, TRL's draft card).
_NOT_IN_ARTIFACT = {"training_args.bin", "README.md"}
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_SCALARS: dict[Any, tuple[type, ...]] = {float: (int, float), int: (int,), bool: (bool,)}
# In the checkpoint folder: the inputs and process count its checkpoints were made from.
CHECKPOINT_STAMP = "hubkit_inputs.json"
# In each checkpoint's trainer_state.json (``stateful_callbacks``): the training seconds up to it.
TRAINING_CLOCK = "HubkitTrainingClock"


@dataclasses.dataclass(frozen=True)
class ParamCount:
    """Trainable and total parameters of a (peft) model, as the paper reports them."""

    trainable: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / self.total

    @classmethod
    def of(cls, model: Any) -> ParamCount:
        """Count a peft model's parameters with peft's own counter (as ``print_trainable_parameters``)."""
        trainable, total = model.get_nb_trainable_parameters()
        return cls(trainable, total)

    def __str__(self) -> str:
        return (
            f"trainable params: {self.trainable:,} || all params: {self.total:,} "
            f"|| trainable%: {self.percent:.4f}"
        )


@dataclasses.dataclass(frozen=True)
class BaseModelRef:
    """The base model to load: what the recipe named, what ``from_pretrained`` gets, pinned revision."""

    name_or_path: str
    load_from: str
    revision: str | None
    local: bool

    def identity(self) -> dict[str, Any]:
        """What pins the weights: file hashes for a local folder, the commit sha for a Hub model."""
        if self.local:
            return {"name_or_path": self.name_or_path, "files": digest_of(hash_files(self.load_from))}
        return {"name_or_path": self.name_or_path, "revision": self.revision}


@dataclasses.dataclass(frozen=True)
class DatasetArtifact:
    """A dataset artifact folder, read and checked: its rows, data hash and leak certificate."""

    path: Path
    rows: list[dict[str, Any]]
    sha256: str
    certificate: schemas.LeakCertificate | None
    manifest_content_hash: str | None
    # Hub datasets the rows came from, for the taint gate: the artifact's own Hub id when it was
    # fetched from the Hub, then the Hub sources its manifest lists (`hubkit data build` records them).
    hub_datasets: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What ``train`` did: the adapter folder, and whether it was already up to date."""

    out: Path
    skipped: bool
    metrics: dict[str, Any]


def lora_config(section: LoraSection) -> LoraConfig:
    """The recipe's ``lora`` section as a peft ``LoraConfig`` for a causal LM."""
    from peft import LoraConfig

    return LoraConfig(
        r=section.r,
        lora_alpha=section.alpha,
        lora_dropout=section.dropout,
        target_modules=list(section.target_modules),
        bias=section.bias,
        task_type="CAUSAL_LM",
    )


def count_lora_parameters(config: PretrainedConfig, lora: LoraSection) -> ParamCount:
    """Trainable/total parameters of ``config``'s causal LM with ``lora`` applied, on the meta device.

    Nothing is allocated, so a 70B-shaped config costs a second, not 140 GB.
    """
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = get_peft_model(AutoModelForCausalLM.from_config(config), lora_config(lora))
    return ParamCount.of(model)


def _is_hub_id(text: str) -> bool:
    return bool(_HUB_ID.match(text)) and not text.startswith(".")


def _build_tiny_llama(dest: Path) -> None:
    """Build the seeded tiny Llama into ``dest`` once (atomically); later runs reuse it."""
    from .tiny import build_tiny_llama, sample_corpus

    if (dest / "config.json").is_file():
        return
    corpus = sample_corpus()
    with atomic_folder(dest) as tmp:
        build_tiny_llama(tmp, corpus)
        # Known provenance for the taint gate: random weights that saw no training data.
        provenance = schemas.BaseModelProvenance(
            name=TINY_LLAMA,
            weights="random initialisation (torch seed 0); trained on no data",
            datasets=[],
            tokenizer_corpus_sha256=digest_of(corpus),
            hubkit_version=__version__,
        )
        write_json(tmp / provenance.FILE, provenance.to_json_dict())


def resolve_base_model(recipe: Recipe) -> BaseModelRef:
    """Check that the recipe's base model exists (no weights load) and pin its revision.

    ``hubkit:tiny-llama`` is built into ``runs/<name>/base-model``; a local folder must hold
    a ``config.json``; a Hub id must resolve (on the Hub or in the local cache) to a commit.
    """
    name = recipe.model.name_or_path
    key = f"{recipe.source}: model.name_or_path"
    if name == TINY_LLAMA:
        folder = recipe.run_dir() / "base-model"
        _build_tiny_llama(folder)
        return BaseModelRef(name, str(folder.resolve()), None, local=True)
    folder = recipe.resolve(os.path.expanduser(name))
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise HubkitError(f"{key}: {folder} has no config.json (not a model folder)")
        return BaseModelRef(name, str(folder), None, local=True)
    if not _is_hub_id(name):
        raise InputNotFound(f"{key}: base model folder {folder} not found")
    return BaseModelRef(name, name, _resolve_hub_revision(name, recipe.model.revision, key), local=False)


def _resolve_hub_revision(repo_id: str, revision: str | None, key: str) -> str:
    """The commit sha a Hub model id (and revision) resolves to: asked of the Hub, else the cache."""
    from huggingface_hub import HfApi, snapshot_download

    try:
        sha = HfApi().model_info(repo_id, revision=revision).sha
        if sha:
            return sha
    except hub_errors():  # offline, unknown or gated: try the local cache
        pass
    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True)).name
    except hub_errors():  # not in the cache
        at = f" at revision {revision!r}" if revision else ""
        raise InputNotFound(
            f"{key}: base model {repo_id!r}{at} not found (neither on the Hub nor in the local cache)"
        ) from None


def resolve_dataset_dir(
    recipe: Recipe, dataset: str | os.PathLike[str] | None = None
) -> tuple[Path, str | None]:
    """The dataset artifact folder to train on: ``dataset`` (a path or Hub id), else ``data.dataset``
    (relative to the recipe), else ``runs/<name>/dataset-clean``. A Hub dataset id is downloaded;
    it comes back beside the folder (None for a local one), since the snapshot path alone would
    lose which Hub dataset the adapter was trained on."""
    if dataset is not None:
        folder, label = Path(dataset), "--dataset"
    elif recipe.data.dataset is not None:
        folder, label = recipe.resolve(recipe.data.dataset), f"{recipe.source}: data.dataset"
    else:
        folder, label = recipe.run_dir() / "dataset-clean", "dataset artifact"
    if folder.is_dir():
        return folder, None
    repo_id = str(dataset) if dataset is not None else recipe.data.dataset
    if repo_id is not None and _is_hub_id(repo_id):
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(repo_id, repo_type="dataset")), repo_id
        except hub_errors() as exc:  # network, auth and not-found alike
            raise InputNotFound(
                f"{label}: Hub dataset {repo_id!r} not found ({type(exc).__name__})"
            ) from None
    raise InputNotFound(
        f"{label}: {folder} not found (run `hubkit data build` and `hubkit data check`, or pass --dataset)"
    )


def load_dataset_artifact(
    folder: Path, allow_unchecked_data: bool = False, *, hub_id: str | None = None
) -> DatasetArtifact:
    """Read a dataset artifact, refusing it without a passing leak certificate unless allowed.

    The rows must have the Alpaca columns ``instruction`` and ``output`` (``input`` optional).
    ``hub_id`` names the Hub dataset ``folder`` was downloaded from, for the adapter's lineage.
    """
    rows = read_dataset(folder)
    certificate = (
        load_leak_certificate(folder) if allow_unchecked_data else require_passing_certificate(folder)
    )
    manifest = schemas.DatasetManifest.read(folder) if (folder / schemas.MANIFEST).is_file() else None
    hub_sources = [s.hub_id for s in manifest.sources if s.hub_id] if manifest else []
    return DatasetArtifact(
        folder,
        rows,
        sha256_file(folder / DATA_FILE),
        certificate,
        manifest.content_hash if manifest else None,
        tuple(dict.fromkeys(i for i in (hub_id, *hub_sources) if i)),
    )


def prompt_completion_dataset(rows: Sequence[dict[str, Any]], template: str = "alpaca") -> Dataset:
    """Alpaca rows as a TRL prompt-completion ``Dataset`` (loss on the completion only)."""
    from datasets import Dataset

    return Dataset.from_list([to_prompt_completion(row, template) for row in rows])


def _scalar_types(hint: Any) -> tuple[tuple[type, ...], str] | None:
    """The Python types a scalar ``SFTConfig`` field accepts and how to name them, else None.

    ``bool | None`` and the like (``activation_checkpointing``, ``tf32``, ``save_total_limit``...)
    are unwrapped: unchecked, ``activation_checkpointing: "no"`` is a truthy string that turns it on.
    """
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    members = typing.get_args(hint) if union else (hint,)
    scalars = [m for m in members if m is not type(None)]
    if not scalars or not all(m in _SCALARS for m in scalars):
        return None
    accepted = tuple(t for m in scalars for t in _SCALARS[m])
    expected = " or ".join(m.__name__ for m in scalars)
    if len(scalars) < len(members):
        return (*accepted, type(None)), f"{expected} or null"
    return accepted, expected


def build_sft_config(recipe: Recipe, output_dir: str | os.PathLike[str]) -> SFTConfig:
    """``SFTConfig`` from the recipe's ``training`` section; TRL/transformers validate the values.

    hubkit only names the key and file at fault, and sets what it owns: the checkpoint folder,
    ``max_length`` from ``data.max_length``, and counting non-pad tokens for the metrics; pinned
    memory defaults to on only with an accelerator (torch warns on every CPU run otherwise).
    """
    import torch
    from trl import SFTConfig

    hints = typing.get_type_hints(SFTConfig)
    for key, value in recipe.training.items():
        where = f"{recipe.source}: training.{key}"
        if key in _OWNED_TRAINING_KEYS:
            raise HubkitError(f"{where}: set by hubkit, use {_OWNED_TRAINING_KEYS[key]}")
        if key not in hints:
            raise HubkitError(f"{recipe.source}: unknown key 'training.{key}' (not an SFTConfig field)")
        # transformers trusts these annotations unchecked: a string here would fail mid-training
        scalar = _scalar_types(hints[key])
        if scalar and (
            not isinstance(value, scalar[0]) or (isinstance(value, bool) and bool not in scalar[0])
        ):
            raise HubkitError(f"{where}: expected {scalar[1]}, got {value!r}")
    kwargs = {
        "include_num_input_tokens_seen": "non_padding",
        "dataloader_pin_memory": torch.accelerator.is_available(),
        **recipe.training,
    }
    try:
        return SFTConfig(output_dir=str(output_dir), max_length=recipe.data.max_length, **kwargs)
    except (TypeError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HubkitError(f"{recipe.source}: training: {first_line}") from None


def _last_complete_checkpoint(folder: Path) -> Path | None:
    """The newest ``checkpoint-N`` with its ``trainer_state.json`` (written last, so a kill
    mid-save leaves a checkpoint without it, which is skipped)."""
    found = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return max(found, key=_checkpoint_step, default=None)


def _checkpoint_step(checkpoint: Path) -> int:
    return int(checkpoint.name.rpartition("-")[2])


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape the result, for provenance."""
    return {"hubkit": __version__, **{name: metadata.version(name) for name in LIBRARIES}}


def hardware(num_processes: int = 1) -> dict[str, Any]:
    """What the run ran on: CPU model and count, GPU names and count, process count."""
    import torch

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), flags=re.MULTILINE)
        cpu = names[0] if names else cpu
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "gpus": gpus,
        "gpu_count": len(gpus),
        "processes": num_processes,
        "platform": platform.platform(),
    }


def _training_inputs(
    recipe: Recipe, base: BaseModelRef, data: DatasetArtifact, allow: bool
) -> dict[str, Any]:
    """The hashes an adapter is made from: when they match, the adapter (or a checkpoint) is reusable."""
    relevant = {key: recipe.to_dict()[key] for key in ("model", "data", "lora", "training")}
    return {
        "base_model": digest_of(base.identity()),
        "dataset_sha256": data.sha256,
        "recipe": digest_of(relevant),
        "allow_unchecked_data": allow,
    }


def _processes(count: int) -> str:
    return f"{count} process" + ("" if count == 1 else "es")


def _stale_checkpoints(checkpoints: Path, stamp: dict[str, Any]) -> bool:
    """Whether ``checkpoints`` holds progress made from other inputs than ``stamp``'s (to discard).

    Progress from the same inputs under another process count raises instead: transformers
    would resume it with this run's steps per epoch and silently stop early, and discarding it
    would lose what a run with the old count can still resume. A stamp without a count counts
    as other inputs.
    """
    if not checkpoints.exists():
        return False
    path = checkpoints / CHECKPOINT_STAMP
    found = read_json(path) if path.is_file() else {}
    if found == stamp:
        return False
    old = found.get("processes") if isinstance(found, dict) else None
    if old is not None and {**found, "processes": stamp["processes"]} == stamp:
        raise HubkitError(
            f"{checkpoints}: checkpoints are from {_processes(old)}, this run has "
            f"{_processes(stamp['processes'])}; resume with {_processes(old)} or remove the folder"
        )
    return True


def _padding_free(args: SFTConfig) -> bool:
    """Whether TRL will send flattened padding-free rows (its rule, in ``SFTTrainer.__init__``)."""
    return args.padding_free or (args.packing and args.packing_strategy in ("bfd", "bfd_split"))


def _refuse_data_parallel(args: SFTConfig, source: str) -> None:
    """Refuse several GPUs in one process: Trainer would wrap the model in ``nn.DataParallel``,
    multiplying the real batch by the GPU count behind the recorded one and cutting padding-free
    batches (one flattened row with its ``cu_seq_lens``) wrongly along dim 0."""
    from transformers.training_args import ParallelMode

    if args.parallel_mode == ParallelMode.NOT_DISTRIBUTED:
        raise HubkitError(
            f"{source}: {args.n_gpu} GPUs visible to one process: launch with `accelerate launch` "
            "(one process per GPU) or set CUDA_VISIBLE_DEVICES"
        )


def _training_clock() -> TrainerCallback:
    """A callback counting training seconds over all of a run's resumed segments.

    transformers writes an ``ExportableState`` callback's ``state()`` into ``trainer_state.json``
    as it saves a checkpoint, so each checkpoint holds exactly its own count, and a resumed run
    finds it in the restored ``TrainerState`` at ``on_train_begin``. The total goes back into
    the live state at ``on_train_end``, where ``train`` reads it: transformers replaces this
    instance when ``restore_callback_states_from_checkpoint`` is set.
    """
    from transformers import TrainerCallback
    from transformers.trainer_callback import ExportableState

    class HubkitTrainingClock(TrainerCallback, ExportableState):
        def __init__(self, seconds: float = 0.0) -> None:
            self.before = seconds
            self.started: float | None = None

        def state(self) -> dict[str, Any]:
            running = 0.0 if self.started is None else time.perf_counter() - self.started
            return {"args": {"seconds": self.before + running}, "attributes": {}}

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            # a checkpoint saved without the clock restarts it at 0 (and transformers would fail
            # to save a callback state that the restored TrainerState lacks)
            saved = state.stateful_callbacks.setdefault(TRAINING_CLOCK, self.state())
            self.before, self.started = saved["args"]["seconds"], time.perf_counter()

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            state.stateful_callbacks[TRAINING_CLOCK] = self.state()

    return HubkitTrainingClock()


class _RunComplete(Exception):
    """The checkpoint resumed from already holds every step of the run."""


def _stop_if_complete() -> TrainerCallback:
    """A callback that ends ``train`` before its first step when the resumed checkpoint reached
    ``max_steps``.

    transformers 5 starts another step on such a resume (its loop only tests ``max_steps`` after
    a step), which moves the weights past the run that was saved. ``on_train_begin`` comes after
    transformers has loaded the checkpoint's weights, optimizer and state (for FSDP and ZeRO-3
    too, into the wrapped model), so what is left is to save them. It is listed after the
    training clock, which adds its entry to a restored state that lacks one (transformers moves
    the clock to the end of the list only when the state has it).
    """
    from transformers import TrainerCallback

    class HubkitStopIfComplete(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step >= state.max_steps > 0:
                raise _RunComplete

    return HubkitStopIfComplete()


def _mean_train_loss(
    log_history: Sequence[dict[str, Any]], resumed_at: int, segment_loss: float, global_step: int
) -> float:
    """Mean loss per step over all of a resumed run's segments, not only this call's.

    transformers' ``training_loss`` averages the steps this call ran (none for a run resumed
    at ``max_steps``, whose ``segment_loss`` is then 0); earlier segments live on in the
    restored ``log_history``, each logged loss weighted by the steps since the log before it.
    Steps a segment ran after its last log and before its checkpoint were never logged and
    are left out.
    """
    total, counted, last = 0.0, 0, 0
    for entry in log_history:
        if "loss" in entry and entry["step"] <= resumed_at:
            total += entry["loss"] * (entry["step"] - last)
            counted += entry["step"] - last
            last = entry["step"]
    segment = global_step - resumed_at
    return (total + segment_loss * segment) / max(counted + segment, 1)


def _load_model(recipe: Recipe, base: BaseModelRef, args: SFTConfig) -> tuple[PreTrainedModel, Any]:
    """The base model and tokenizer. With ``model.attn_implementation`` unset, padding-free
    training moves a model transformers gives ``sdpa`` to ``sdpa_varlen`` (same numbers,
    per-example attention cost); models without SDPA keep what transformers picked."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"revision": base.revision, "dtype": recipe.model.dtype}
    requested = recipe.model.attn_implementation
    if requested:
        if requested == SDPA_VARLEN:
            register_sdpa_varlen()
        kwargs["attn_implementation"] = requested
    tokenizer = AutoTokenizer.from_pretrained(base.load_from, revision=base.revision)
    model = AutoModelForCausalLM.from_pretrained(base.load_from, **kwargs)
    if not requested and _padding_free(args) and model.config._attn_implementation == "sdpa":
        model.set_attn_implementation(register_sdpa_varlen())
    return model, tokenizer


def build_trainer(
    recipe: Recipe,
    base: BaseModelRef,
    data: DatasetArtifact,
    args: SFTConfig,
    callbacks: Sequence[TrainerCallback] = (),
) -> SFTTrainer:
    """The ``SFTTrainer`` for a recipe: base model + LoRA, rows as Alpaca prompt-completion pairs."""
    from trl import SFTTrainer

    model, tokenizer = _load_model(recipe, base, args)
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=prompt_completion_dataset(data.rows, recipe.data.prompt_template),
        processing_class=tokenizer,
        peft_config=lora_config(recipe.lora),
        callbacks=list(callbacks),
    )


def _base_model_files(base: BaseModelRef) -> dict[str, str]:
    """sha256 of every file of the base model: the folder, or the Hub snapshot in the cache."""
    if base.local:
        return hash_files(base.load_from)
    from huggingface_hub import snapshot_download

    return hash_files(snapshot_download(base.load_from, revision=base.revision, local_files_only=True))


def _prepare_checkpoints(
    checkpoints: Path, stamp: dict[str, Any], state: Any, say: Callable[[str], None]
) -> Path | None:
    """Stamp ``checkpoints`` with this run's inputs, discarding progress made from others; the
    last complete checkpoint to resume from, if any."""
    stale = _stale_checkpoints(checkpoints, stamp)  # on every rank, so a refusal stops them all
    state.wait_for_everyone()  # all have read the stamp before the main process replaces it
    if state.is_main_process:
        if stale:
            say(f"Discarding checkpoints made from other inputs: {checkpoints}")
            shutil.rmtree(checkpoints)
        write_json(checkpoints / CHECKPOINT_STAMP, stamp)
    state.wait_for_everyone()
    return _last_complete_checkpoint(checkpoints)


def _fit(trainer: SFTTrainer, resume: Path | None, say: Callable[[str], None]) -> float:
    """Train (from ``resume``); the mean loss of the steps this segment ran."""
    try:
        return trainer.train(resume_from_checkpoint=str(resume) if resume else None).training_loss
    except _RunComplete:
        say(f"{resume.name} holds all {trainer.state.global_step} steps: saving it, nothing left to train")
        return 0.0  # no step ran: the mean covers the checkpoint's logged steps only


def _save_whole(trainer: SFTTrainer, staging: Path) -> None:
    """Save the adapter with whole tensors, on every rank: FSDP / ZeRO-3 gather the weights collectively."""
    if trainer.is_fsdp_enabled:  # the adapter file must hold whole tensors, not this rank's shards
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(staging))


def _metrics(
    trainer: SFTTrainer,
    resume: Path | None,
    segment_loss: float,
    params: ParamCount,
    global_batch: int,
    run_hardware: dict[str, Any],
) -> schemas.TrainingMetrics:
    """``metrics.json``: the loss curve and figures of every segment of the run."""
    resumed_at = _checkpoint_step(resume) if resume else 0
    wall = trainer.state.stateful_callbacks[TRAINING_CLOCK]["args"]["seconds"]
    return schemas.TrainingMetrics(
        loss=[
            {k: entry[k] for k in ("step", "loss", "learning_rate", "num_input_tokens_seen") if k in entry}
            for entry in trainer.state.log_history
            if "loss" in entry
        ],
        train_loss=_mean_train_loss(
            trainer.state.log_history, resumed_at, segment_loss, trainer.state.global_step
        ),
        global_step=trainer.state.global_step,
        resumed_from=resume.name if resume else None,
        tokens_seen=trainer.state.num_input_tokens_seen,
        wall_time_s=round(wall, 3),
        global_batch_size=global_batch,
        trainable_parameters=schemas.ParameterCount(
            trainable=params.trainable, total=params.total, percent=params.percent
        ),
        hardware=run_hardware,
    )


def _provenance(
    recipe: Recipe,
    base: BaseModelRef,
    data: DatasetArtifact,
    hub_id: str | None,
    allow_unchecked_data: bool,
    run_hardware: dict[str, Any],
) -> schemas.AdapterProvenance:
    """``provenance.json``: what the adapter was made from, for the taint gate and the card."""
    return schemas.AdapterProvenance(
        base_model=schemas.BaseModelRecord(
            name_or_path=base.name_or_path,
            revision=recipe.model.revision,
            resolved_revision=base.revision,
            files=_base_model_files(base),
        ),
        dataset=schemas.DatasetRecord(
            path=portable_ref(data.path),
            hub_id=hub_id,
            data_sha256=data.sha256,
            manifest_content_hash=data.manifest_content_hash,
            rows=len(data.rows),
        ),
        # the taint gate's lineage: the data trained on, not what the recipe names
        datasets=list(data.hub_datasets),
        leak_certificate=data.certificate,
        allow_unchecked_data=allow_unchecked_data,
        recipe=recipe.to_dict(),  # every key, defaults included: the recipe as it ran
        libraries=library_versions(),
        hardware=run_hardware,
    )


def _write_adapter(
    out: Path,
    staging: Path,
    records: Sequence[schemas.ArtifactFile],
    inputs: dict[str, Any],
    base: BaseModelRef,
    data: DatasetArtifact,
    allow_unchecked_data: bool,
) -> None:
    """The adapter artifact, atomically: the saved adapter, ``records`` and the manifest."""
    with atomic_folder(out) as tmp:
        for item in staging.iterdir():
            if item.name not in _NOT_IN_ARTIFACT:
                shutil.move(str(item), tmp / item.name)
        if base.local:  # peft wrote this machine's path of the base: name it relative to the adapter
            config = read_json(tmp / "adapter_config.json")
            config["base_model_name_or_path"] = relative_to_artifact(base.load_from, out)
            write_json(tmp / "adapter_config.json", config)
        remember_location(data.sha256, data.path)  # where the push gate finds the dataset it names
        for record in records:
            write_json(tmp / record.FILE, record.to_json_dict())
        write_manifest(
            tmp,
            schemas.ADAPTER,
            inputs,
            base_model=base.name_or_path,
            dataset_sha256=data.sha256,
            allow_unchecked_data=allow_unchecked_data,
            leak_check_passed=bool(data.certificate and data.certificate.passed),
        )


def train(
    recipe: Recipe,
    *,
    dataset: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    allow_unchecked_data: bool = False,
    force: bool = False,
    callbacks: Sequence[TrainerCallback] = (),
    echo: Callable[[str], None] = print,
) -> TrainResult:
    """Train the recipe's LoRA adapter and write it to ``out`` (default ``runs/<name>/adapter``).

    Everything a user can get wrong (recipe keys, base model, dataset, leak certificate) is
    checked before weights load. An adapter already made from the same inputs is kept
    (unless ``force``); an interrupted run resumes from its last complete checkpoint in
    ``<out>.checkpoints/`` (with the same process count, else it stops; one that holds every
    step is saved as it is, and ``callbacks`` then see no ``on_train_end``), and its metrics'
    mean loss and training seconds cover every segment. Several GPUs need one process each
    (``accelerate launch``). Under ``accelerate launch`` only the main process writes.
    """
    out = Path(out) if out is not None else recipe.run_dir() / "adapter"
    checkpoints = out.with_name(f"{out.name}.checkpoints")
    args = build_sft_config(recipe, checkpoints)
    state = args.distributed_state  # set up by SFTConfig (gloo on CPU needs training.use_cpu)
    say = echo if state.is_main_process else (lambda _msg: None)
    folder, hub_id = resolve_dataset_dir(recipe, dataset)
    data = load_dataset_artifact(folder, allow_unchecked_data, hub_id=hub_id)
    with state.main_process_first():
        base = resolve_base_model(recipe)
    inputs = _training_inputs(recipe, base, data, allow_unchecked_data)
    if not force and is_up_to_date(out, inputs):
        say(f"Adapter up to date: {out}")
        return TrainResult(out, True, schemas.TrainingMetrics.read(out).to_json_dict())

    _refuse_data_parallel(args, recipe.source)
    resume = _prepare_checkpoints(checkpoints, {**inputs, "processes": state.num_processes}, state, say)
    trainer = build_trainer(recipe, base, data, args, [*callbacks, _training_clock(), _stop_if_complete()])
    if state.is_main_process:
        console().show_training(trainer)
    params = ParamCount.of(trainer.model)
    say(str(params))
    global_batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    say(
        f"Training on {len(data.rows):,} rows, global batch {global_batch}"
        + (f", resuming from {resume}" if resume else "")
    )
    segment_loss = _fit(trainer, resume, say)
    staging = checkpoints / "final"
    _save_whole(trainer, staging)
    state.wait_for_everyone()

    run_hardware = hardware(state.num_processes)
    metrics = _metrics(trainer, resume, segment_loss, params, global_batch, run_hardware)
    if state.is_main_process:
        provenance = _provenance(recipe, base, data, hub_id, allow_unchecked_data, run_hardware)
        _write_adapter(out, staging, [metrics, provenance], inputs, base, data, allow_unchecked_data)
        shutil.rmtree(checkpoints, ignore_errors=True)
        say(f"Adapter written: {out}")
    state.wait_for_everyone()
    return TrainResult(out, False, metrics.to_json_dict())
