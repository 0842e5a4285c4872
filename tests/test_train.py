"""hubkit train: the tiny recipe end to end, the loss mask, the gates, resume and accelerate.

Every run uses the tiny Llama (hidden 64, 2 layers) and the bundled GSM8K sample, so the
whole file stays within a couple of minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from importlib.resources import files
from pathlib import Path

import pytest
from certificates import complete_certificate
from test_decontam import run_cli

from hubkit.artifacts import read_json, sha256_file, write_json, write_manifest
from hubkit.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "recipes" / "tiny.yaml"


def sample_rows() -> list[dict[str, str]]:
    lines = files("hubkit").joinpath("sample_data/gsm8k_train_sample.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    # every third row carries an input, so both Alpaca wordings are exercised
    return [
        {
            "instruction": r["question"] if i % 3 else "Solve the problem.",
            "input": "" if i % 3 else r["question"],
            "output": r["answer"],
            "data_source": "gsm8k",
        }
        for i, r in enumerate(rows)
    ]


def make_dataset(
    folder: Path, rows: list[dict], certificate: dict | None = None, *, complete: bool = True
) -> Path:
    """A dataset artifact as `hubkit data check` leaves it: data.parquet, manifest, certificate
    (every field of one; ``complete=False``: only ``certificate`` and the data hash, hand-written)."""
    import pandas as pd

    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(folder / "data.parquet", index=False)
    if certificate is not None:
        data_sha256 = sha256_file(folder / "data.parquet")
        written = (
            complete_certificate(data_sha256, len(rows)) if complete else {"dataset_sha256": data_sha256}
        )
        write_json(folder / "leak_certificate.json", written | certificate)
    write_manifest(folder, "dataset")
    return folder


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("ds") / "dataset-clean", sample_rows(), {"passed": True})


def test_tiny_recipe_trains_and_adapter_loads(tmp_path, monkeypatch, capsys, dataset):
    """`hubkit train recipes/tiny.yaml`: the loss falls; the artifact is complete and loads in peft."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["train", str(TINY), "--dataset", str(dataset)], capsys)
    assert code == 0, err
    assert "trainable params: 18,432 || all params: 166,208 || trainable%: 11.0897" in out
    assert "{'loss'" not in out + err and "Warning" not in out + err  # one bar, not a dict per step

    adapter = tmp_path / "runs" / "tiny" / "adapter"
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "metrics.json"} <= {
        p.name for p in adapter.iterdir()
    }
    assert not (tmp_path / "runs" / "tiny" / "adapter.checkpoints").exists()
    metrics = read_json(adapter / "metrics.json")
    losses = [entry["loss"] for entry in metrics["loss"]]
    assert len(losses) == 60
    assert sum(losses[-10:]) / 10 < sum(losses[:5]) / 5 - 0.1, losses
    assert metrics["tokens_seen"] > 0 and metrics["wall_time_s"] > 0
    assert metrics["hardware"]["cpu_count"] >= 1

    provenance = read_json(adapter / "provenance.json")
    base = tmp_path / "runs" / "tiny" / "base-model"
    assert provenance["base_model"]["name_or_path"] == "hubkit:tiny-llama"
    assert provenance["base_model"]["files"]["model.safetensors"] == sha256_file(base / "model.safetensors")
    assert provenance["dataset"]["data_sha256"] == sha256_file(dataset / "data.parquet")
    assert provenance["leak_certificate"] == read_json(dataset / "leak_certificate.json")
    assert provenance["allow_unchecked_data"] is False
    assert provenance["recipe"]["training"]["max_steps"] == 60
    assert set(provenance["libraries"]) >= {"torch", "transformers", "peft", "trl", "datasets", "accelerate"}
    assert read_json(adapter / "manifest.json")["kind"] == "adapter"

    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter)
    saved = load_file(adapter / "adapter_model.safetensors")
    lora_b = {k: v for k, v in saved.items() if "lora_B" in k}
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b.values())  # trained, not the zero init
    loaded = dict(model.named_parameters())
    for key, value in lora_b.items():
        name = key.replace("lora_B.weight", "lora_B.default.weight")
        assert torch.equal(loaded[name], value)

    # the same inputs again: the stage is skipped
    code, out, _ = run_cli(["train", str(TINY), "--dataset", str(dataset)], capsys)
    assert code == 0 and "Adapter up to date" in out


def test_prompt_tokens_are_masked_response_and_eos_are_not(tiny_llama, dataset, tmp_path):
    """Collated labels: -100 on the Alpaca prompt and padding; the response and EOS are trained."""
    from hubkit.prompts import format_prompt
    from hubkit.train import build_sft_config, build_trainer, load_dataset_artifact, resolve_base_model

    data = load_dataset_artifact(dataset)
    for packing in (False, True):
        recipe = load_recipe(TINY, [f"model.name_or_path={tiny_llama}", f"training.packing={packing}"])
        trainer = build_trainer(recipe, resolve_base_model(recipe), data, build_sft_config(recipe, tmp_path))
        tok = trainer.processing_class
        # packed rows come longest first (best-fit decreasing): take the last ones, several per row
        n_rows = len(trainer.train_dataset)
        examples = [
            trainer.train_dataset[i] for i in (range(4) if not packing else range(n_rows - 4, n_rows))
        ]
        batch = trainer.data_collator(examples)
        if not packing:
            ended = 0
            for i, row in enumerate(data.rows[:4]):
                ids, labels = batch["input_ids"][i].tolist(), batch["labels"][i].tolist()
                n_prompt = len(tok(format_prompt(row))["input_ids"])
                n = len(examples[i]["input_ids"])
                assert tok.decode(ids[:n_prompt]).endswith("### Response:\n")
                assert labels[:n_prompt] == [-100] * n_prompt
                assert labels[n_prompt:n] == ids[n_prompt:n]
                if n < recipe.data.max_length:  # not truncated: ends in EOS, which is trained
                    assert ids[n - 1] == tok.eos_token_id and labels[n - 1] == tok.eos_token_id
                    ended += 1
                assert labels[n:] == [-100] * (len(labels) - n)  # padding
            assert ended and any("### Input:" in tok.decode(batch["input_ids"][i]) for i in range(4))
        else:  # padding-free: rows flattened into one sequence, position_ids restart at each example
            ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
            starts = [i for i, p in enumerate(batch["position_ids"][0].tolist()) if p == 0] + [len(ids)]
            for a, b in zip(starts, starts[1:], strict=False):
                seg, lab = ids[a:b], labels[a:b]
                n_prompt = next(i for i, x in enumerate(lab) if x != -100)
                assert tok.decode(seg[:n_prompt]).endswith("### Response:\n")
                assert lab[n_prompt:] == seg[n_prompt:]  # response, then EOS unless truncated
            assert labels.count(tok.eos_token_id) >= 1


def test_trainable_percent_matches_the_paper_on_meta_device():
    """r=16 on gate/up/down: ~0.28% of Llama-2-13B, ~0.2% of 70B, counted without allocating them."""
    from transformers import LlamaConfig

    from hubkit.train import count_lora_parameters

    lora = load_recipe(ROOT / "recipes" / "platypus2-13b.yaml").lora
    llama13 = LlamaConfig(
        hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40
    )
    llama70 = LlamaConfig(
        hidden_size=8192,
        intermediate_size=28672,
        num_hidden_layers=80,
        num_attention_heads=64,
        num_key_value_heads=8,
    )
    p13, p70 = count_lora_parameters(llama13, lora), count_lora_parameters(llama70, lora)
    assert p13.trainable == 40 * 3 * 16 * (5120 + 13824)
    assert round(p13.percent, 2) == 0.28 and 13.0e9 < p13.total < 13.1e9
    assert p70.trainable == 80 * 3 * 16 * (8192 + 28672)
    assert round(p70.percent, 1) == 0.2 and 68.9e9 < p70.total < 69.2e9
    qkvo = load_recipe(ROOT / "recipes" / "platypus2-13b-qkvo.yaml").lora
    assert count_lora_parameters(llama13, qkvo).trainable > p13.trainable


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--set", "lora.rankk=8"], "tiny.yaml: unknown key 'lora.rankk'"),
        (["--set", "training.learnig_rate=0.1"], "tiny.yaml: unknown key 'training.learnig_rate'"),
        (["--set", "training.learning_rate=fast"], "tiny.yaml: training.learning_rate: expected float"),
        (
            ["--set", "training.max_length=8"],
            "tiny.yaml: training.max_length: set by hubkit, use data.max_length",
        ),
        (
            ["--set", "training.push_to_hub=true"],
            "tiny.yaml: training.push_to_hub: set by hubkit, use the hub section and `hubkit push`",
        ),
        (["--set", "model.name_or_path=./no-such-model"], "model.name_or_path: base model folder"),
        (
            ["--set", "model.name_or_path=no-such-org/no-such-model"],
            "base model 'no-such-org/no-such-model' not found",
        ),
        (["--set", "data.prompt_template=vicuna"], "data.prompt_template: unknown template 'vicuna'"),
        # `bool | None` / `int | None` fields are checked too: a string "no" would be truthy
        (
            ["--set", "training.activation_checkpointing=no"],
            "tiny.yaml: training.activation_checkpointing: expected bool or null, got 'no'",
        ),
        (
            ["--set", "training.save_total_limit=2.5"],
            "tiny.yaml: training.save_total_limit: expected int or null, got 2.5",
        ),
        (["--set", "training.eval_steps=often"], "tiny.yaml: training.eval_steps: expected float or null"),
    ],
)
def test_bad_recipe_fails_before_training_with_one_line(
    tmp_path, monkeypatch, capsys, dataset, args, expected
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a Hub id must be found in the (empty) cache
    code, out, err = run_cli(["train", str(TINY), "--dataset", str(dataset), *args], capsys)
    assert code == 1
    message = err.strip().splitlines()[-1]
    assert message.startswith("Error: ") and expected in message
    assert not (tmp_path / "runs" / "tiny" / "adapter").exists()


def test_optional_training_fields_accept_null_and_their_type(tmp_path):
    """`bool | None`, `int | None`, `float | None` fields take null or a value of the inner type."""
    from hubkit.train import build_sft_config

    overrides = [
        "training.activation_checkpointing=null",
        "training.save_total_limit=null",
        "training.data_seed=null",
        "training.tf32=false",
        "training.eval_steps=5",
    ]
    args = build_sft_config(load_recipe(TINY, overrides), tmp_path)
    assert args.save_total_limit is None and args.data_seed is None
    assert args.tf32 is False and args.eval_steps == 5


def test_dataset_gates(tmp_path, monkeypatch, capsys, tiny_llama):
    """No/failed/stale certificate or a missing `output` column: refused, naming the file."""
    rows = sample_rows()[:16]
    cases = {
        "unchecked": (make_dataset(tmp_path / "unchecked", rows), "no leak_certificate.json"),
        "failed": (make_dataset(tmp_path / "failed", rows, {"passed": False}), "leak check did not pass"),
        "hand-written": (  # passed and for this data, but not a certificate `hubkit data check` wrote
            make_dataset(tmp_path / "hand-written", rows, {"passed": True}, complete=False),
            "hand-written/leak_certificate.json: missing field 'benchmarks'",
        ),
        "miscounted": (
            make_dataset(tmp_path / "miscounted", rows, {"rows_removed": 0}),
            r"miscounted/leak_certificate.json: 18 rows checked - 0 removed = 18, but data.parquet holds 16",
        ),
        "no-output": (
            make_dataset(
                tmp_path / "no-output",
                [{k: v for k, v in r.items() if k != "output"} for r in rows],
                {"passed": True},
            ),
            "no-output/data.parquet: missing column 'output'",
        ),
    }
    stale = make_dataset(tmp_path / "stale", rows, {"passed": True})
    make_dataset(tmp_path / "other", rows[:8])
    os.replace(tmp_path / "other" / "data.parquet", stale / "data.parquet")
    cases["stale"] = (stale, "certificate does not match data.parquet")
    base = [
        "train",
        str(TINY),
        "--set",
        f"model.name_or_path={tiny_llama}",
        "--out",
        str(tmp_path / "adapter"),
    ]
    for folder, expected in cases.values():
        code, _, err = run_cli([*base, "--dataset", str(folder)], capsys)
        assert code == 1 and expected in err and len(err.strip().splitlines()) == 1, err

    # --allow-unchecked-data trains anyway and says so in the provenance
    unchecked = [*base, "--dataset", str(cases["unchecked"][0]), "--allow-unchecked-data"]
    code, _, err = run_cli([*unchecked, "--set", "training.max_steps=2"], capsys)
    assert code == 0, err
    provenance = read_json(tmp_path / "adapter" / "provenance.json")
    assert provenance["allow_unchecked_data"] is True and provenance["leak_certificate"] is None
    assert read_json(tmp_path / "adapter" / "manifest.json")["allow_unchecked_data"] is True


def test_dataset_from_the_hub(local_hub, tmp_path, dataset, write_token):
    """`data.dataset` may be a Hub dataset id: the artifact is fetched and checked like a folder."""
    from huggingface_hub import HfApi

    from hubkit.train import load_dataset_artifact, resolve_dataset_dir

    api = HfApi(token=write_token)
    api.create_repo("alice/tiny-clean", repo_type="dataset", exist_ok=True)
    api.upload_folder(repo_id="alice/tiny-clean", repo_type="dataset", folder_path=dataset)
    recipe = load_recipe(TINY, ["data.dataset=alice/tiny-clean"])
    folder, hub_id = resolve_dataset_dir(recipe)
    artifact = load_dataset_artifact(folder, hub_id=hub_id)
    assert hub_id == "alice/tiny-clean" and artifact.hub_datasets[0] == "alice/tiny-clean"
    assert artifact.sha256 == sha256_file(dataset / "data.parquet") and artifact.certificate["passed"]


def test_provenance_names_the_datasets_trained_on(local_hub, tmp_path, monkeypatch, tiny_llama, write_token):
    """`--dataset` (here a Hub id) wins over the recipe: the provenance's `datasets`, and so the taint
    gate's lineage, name that artifact and the Hub sources of its manifest, not the recipe's sources."""
    from huggingface_hub import HfApi

    from hubkit.merge.taint import read_lineage
    from hubkit.train import load_dataset_artifact, train

    folder = make_dataset(tmp_path / "other-data", sample_rows()[:16], {"passed": True})
    sources = [
        {"name": "math", "hub_id": "carol/grade-school-math", "split": "train"},
        {"name": "local", "path": "x.jsonl"},
    ]
    write_manifest(folder, "dataset", sources=sources)
    api = HfApi(token=write_token)
    api.create_repo("alice/tiny-lineage", repo_type="dataset", exist_ok=True)
    api.upload_folder(repo_id="alice/tiny-lineage", repo_type="dataset", folder_path=folder)

    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(TINY, [f"model.name_or_path={tiny_llama}", "training.max_steps=2"])
    out = train(recipe, dataset="alice/tiny-lineage", out=tmp_path / "adapter", echo=lambda _: None).out
    expected = ["alice/tiny-lineage", "carol/grade-school-math"]
    assert read_json(out / "provenance.json").get("datasets") == expected
    assert read_lineage(out).datasets == expected
    assert load_dataset_artifact(folder).hub_datasets == ("carol/grade-school-math",)  # a local folder


def test_resume_refuses_checkpoints_from_another_process_count(tmp_path, tiny_llama, dataset):
    """Checkpoints from 2 processes are neither resumed by 1 (transformers would stop early) nor deleted."""
    from hubkit.errors import HubkitError
    from hubkit.train import _training_inputs, load_dataset_artifact, resolve_base_model, train

    recipe = load_recipe(TINY, [f"model.name_or_path={tiny_llama}", "training.max_steps=2"])
    inputs = _training_inputs(recipe, resolve_base_model(recipe), load_dataset_artifact(dataset), False)
    checkpoints = tmp_path / "adapter.checkpoints"
    write_json(checkpoints / "checkpoint-5" / "trainer_state.json", {"global_step": 5})
    write_json(checkpoints / "hubkit_inputs.json", {**inputs, "processes": 2})
    with pytest.raises(HubkitError) as caught:
        train(recipe, dataset=dataset, out=tmp_path / "adapter", echo=lambda _: None)
    message = str(caught.value)
    assert message.startswith(f"{checkpoints}: checkpoints are from 2 processes, this run has 1 process")
    assert message.endswith("; resume with 2 processes or remove the folder")
    assert (checkpoints / "checkpoint-5" / "trainer_state.json").is_file()


def test_checkpoints_from_other_inputs_are_stale(tmp_path):
    """Other inputs, or an older stamp without a process count: discarded; another count: refused."""
    from hubkit.errors import HubkitError
    from hubkit.train import CHECKPOINT_STAMP, _stale_checkpoints

    stamp = {"recipe": "r", "processes": 1}
    write_json(tmp_path / CHECKPOINT_STAMP, stamp)
    assert not _stale_checkpoints(tmp_path, stamp)
    assert _stale_checkpoints(tmp_path, {**stamp, "recipe": "other"})
    with pytest.raises(HubkitError, match="from 1 process, this run has 4 processes"):
        _stale_checkpoints(tmp_path, {**stamp, "processes": 4})
    write_json(tmp_path / CHECKPOINT_STAMP, {"recipe": "r"})
    assert _stale_checkpoints(tmp_path, stamp)
    assert not _stale_checkpoints(tmp_path / "none", stamp)


def test_killed_run_resumes_from_checkpoint(tmp_path, tiny_llama, dataset):
    """SIGKILL after a checkpoint: no half adapter; the re-run resumes there and finishes. The
    killed run is --verbose: the trainer's own log lines (one dict per step) are printed."""
    from transformers import TrainerCallback

    from hubkit.train import TRAINING_CLOCK, train

    out = tmp_path / "adapter"
    overrides = [f"model.name_or_path={tiny_llama}", "training.max_steps=40", "training.save_steps=5"]
    cmd = [sys.executable, "-m", "hubkit", "train", str(TINY), "--dataset", str(dataset), "--out", str(out)]
    cmd += [arg for item in overrides for arg in ("--set", item)] + ["--verbose"]
    env = {k: v for k, v in os.environ.items() if k != "TRANSFORMERS_VERBOSITY"} | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    checkpoints = tmp_path / "adapter.checkpoints"
    deadline = time.monotonic() + 120
    while not list(checkpoints.glob("checkpoint-*/trainer_state.json")):
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint before the run ended"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert re.search(r"^\{'loss': ", proc.stdout.read().decode(), re.M)
    assert not out.exists()
    clocks = {  # the training seconds each complete checkpoint holds
        path.parent.name: read_json(path)["stateful_callbacks"][TRAINING_CLOCK]["args"]["seconds"]
        for path in checkpoints.glob("checkpoint-*/trainer_state.json")
    }

    class CountSteps(TrainerCallback):
        steps, seconds = 0, 0.0

        def on_train_begin(self, args, state, control, **kwargs):
            CountSteps.seconds = -time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            CountSteps.steps += 1

        def on_train_end(self, args, state, control, **kwargs):
            CountSteps.seconds += time.perf_counter()

    result = train(load_recipe(TINY, overrides), dataset=dataset, out=out, callbacks=[CountSteps()])
    resumed_at = int(result.metrics["resumed_from"].rpartition("-")[2])
    assert resumed_at >= 5 and resumed_at % 5 == 0
    assert result.metrics["global_step"] == 40
    assert CountSteps.steps == 40 - resumed_at
    assert (out / "adapter_model.safetensors").is_file() and not checkpoints.exists()
    # both segments count: the mean of all 40 logged losses, the seconds of both (±10 ms)
    losses = [entry["loss"] for entry in result.metrics["loss"]]
    assert len(losses) == 40 and result.metrics["train_loss"] == pytest.approx(sum(losses) / 40)
    first = clocks[result.metrics["resumed_from"]]
    assert first > 0 and result.metrics["wall_time_s"] >= first + CountSteps.seconds - 0.01


@pytest.mark.parametrize("restore_callbacks", [False, True])
def test_run_resumed_at_its_last_step_saves_that_checkpoint(tmp_path, tiny_llama, dataset, restore_callbacks):
    """A crash after the final checkpoint, before the adapter: the re-run runs no step (transformers
    5 would run one past ``max_steps``), writes the checkpoint's weights, and its metrics cover the
    first run's steps and seconds, also when transformers restores the callbacks from the checkpoint."""
    import torch
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from hubkit.train import TRAINING_CLOCK, train

    class Crash(TrainerCallback):
        def on_train_end(self, args, state, control, **kwargs):
            raise RuntimeError("crash after the last checkpoint")

    class CountSteps(TrainerCallback):
        steps = 0

        def on_step_begin(self, args, state, control, **kwargs):
            CountSteps.steps += 1

    overrides = [f"model.name_or_path={tiny_llama}", "training.max_steps=4", "training.save_steps=4"]
    overrides += ["training.lr_scheduler_type=constant", "training.warmup_steps=0"]  # a step would move them
    overrides.append(f"training.restore_callback_states_from_checkpoint={str(restore_callbacks).lower()}")
    recipe, out = load_recipe(TINY, overrides), tmp_path / "adapter"
    with pytest.raises(RuntimeError, match="crash"):
        train(recipe, dataset=dataset, out=out, callbacks=[Crash()], echo=lambda _: None)
    checkpoint = tmp_path / "adapter.checkpoints" / "checkpoint-4"
    saved = read_json(checkpoint / "trainer_state.json")
    first = saved["stateful_callbacks"][TRAINING_CLOCK]["args"]["seconds"]
    logged = [entry["loss"] for entry in saved["log_history"] if "loss" in entry]
    weights = load_file(checkpoint / "adapter_model.safetensors")

    said: list[str] = []
    metrics = train(recipe, dataset=dataset, out=out, callbacks=[CountSteps()], echo=said.append).metrics
    assert CountSteps.steps == 0 and metrics["global_step"] == 4
    assert "checkpoint-4 holds all 4 steps: saving it, nothing left to train" in said
    written = load_file(out / "adapter_model.safetensors")
    assert written.keys() == weights.keys() and all(torch.equal(written[k], weights[k]) for k in weights)
    losses = [entry["loss"] for entry in metrics["loss"]]
    assert metrics["resumed_from"] == "checkpoint-4" and len(logged) == 4 and losses == logged
    assert metrics["train_loss"] == pytest.approx(sum(logged) / 4)
    assert first > 0 and metrics["wall_time_s"] == pytest.approx(first, abs=1e-3)


def test_two_gpus_in_one_process_are_refused_before_weights_load(tmp_path, monkeypatch, tiny_llama, dataset):
    """One process seeing 2 GPUs would train under nn.DataParallel (a batch n_gpu times the recorded
    one, padding-free rows cut along dim 0): refused before any weights load."""
    import hubkit.train as hubkit_train
    from hubkit.errors import HubkitError

    build = hubkit_train.build_sft_config

    def two_gpus(recipe, output_dir):
        args = build(recipe, output_dir)
        args._n_gpu = 2  # what TrainingArguments._setup_devices counts with 2 GPUs visible, no launcher
        return args

    monkeypatch.setattr(hubkit_train, "build_sft_config", two_gpus)
    monkeypatch.setattr(hubkit_train, "build_trainer", lambda *_a, **_k: pytest.fail("weights loaded"))
    recipe = load_recipe(TINY, [f"model.name_or_path={tiny_llama}"])
    with pytest.raises(HubkitError) as caught:
        hubkit_train.train(recipe, dataset=dataset, out=tmp_path / "adapter", echo=lambda _: None)
    assert str(caught.value) == (
        f"{recipe.source}: 2 GPUs visible to one process: launch with `accelerate launch` "
        "(one process per GPU) or set CUDA_VISIBLE_DEVICES"
    )


def test_two_process_accelerate_run_writes_one_adapter(tmp_path, tiny_llama, dataset):
    """`accelerate launch` with 2 CPU processes (gloo): one adapter, written by rank 0 only."""
    out = tmp_path / "adapter"
    # --multi_gpu means "torchrun": with training.use_cpu the ranks join a gloo group on CPU
    launch = "launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no"
    cmd = [str(Path(sys.executable).with_name("accelerate")), *launch.split(), "--main_process_port", "0"]
    cmd += ["-m", "hubkit", "train", str(TINY), "--dataset", str(dataset), "--out", str(out)]
    for item in (f"model.name_or_path={tiny_llama}", "training.max_steps=4", "training.use_cpu=true"):
        cmd += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("Adapter written") == 1
    metrics = read_json(out / "metrics.json")
    assert metrics["hardware"]["processes"] == 2 and metrics["global_batch_size"] == 4
    assert metrics["global_step"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]  # no temp or checkpoint folders left


# ---------------------------------------------------------------- sdpa_varlen (hubkit.attention)

PACKED_LENGTHS = (23, 9, 31)


def _model(folder: Path, attention: str):
    from transformers import AutoModelForCausalLM

    from hubkit.attention import register_sdpa_varlen

    register_sdpa_varlen()
    return AutoModelForCausalLM.from_pretrained(folder, attn_implementation=attention).eval()


@pytest.fixture(scope="module", params=["mha", "gqa"])
def attention_model(request, tiny_llama, tmp_path_factory) -> Path:
    """The tiny Llama, and a grouped-query variant (4 query heads share 2 key/value heads)."""
    if request.param == "mha":
        return tiny_llama
    import torch
    from transformers import AutoConfig, LlamaForCausalLM

    config = AutoConfig.from_pretrained(tiny_llama)
    config.num_key_value_heads = 2
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("gqa")
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def _packed(sequences: list) -> dict:
    """One padding-free row, shaped as TRL's collator sends it."""
    import torch

    lengths = [len(s) for s in sequences]
    bounds = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    return {
        "input_ids": torch.cat(sequences)[None],
        "position_ids": torch.cat([torch.arange(n) for n in lengths])[None],
        "cu_seq_lens_q": bounds,
        "cu_seq_lens_k": bounds,
        "max_length_q": max(lengths),
        "max_length_k": max(lengths),
    }


def test_sdpa_varlen_gives_each_packed_example_its_own_logits(attention_model):
    """A packed row through sdpa_varlen = each example alone = transformers' block-diagonal sdpa."""
    import torch

    varlen, sdpa = _model(attention_model, "sdpa_varlen"), _model(attention_model, "sdpa")
    torch.manual_seed(0)
    sequences = [torch.randint(4, varlen.config.vocab_size, (n,)) for n in PACKED_LENGTHS]
    first, second = PACKED_LENGTHS[0], sum(PACKED_LENGTHS[:2])
    with torch.no_grad():
        packed = varlen(**_packed(sequences)).logits[0]
        alone = torch.cat([sdpa(input_ids=s[None]).logits[0] for s in sequences])
        # transformers finds packed rows from position_ids only without a cache, as in training
        dense = sdpa(**_packed(sequences), use_cache=False).logits[0]
        # what attending across examples would give: the second example sees the first
        leaked = sdpa(
            input_ids=torch.cat(sequences[:2])[None],
            position_ids=_packed(sequences[:2])["position_ids"],
            attention_mask=torch.ones(1, second, dtype=torch.long),
        ).logits[0, first:]
    assert packed.shape == alone.shape
    assert (packed - alone).abs().max() < 1e-5
    assert (packed - dense).abs().max() < 1e-5
    assert (leaked - alone[first:second]).abs().max() > 1e-3  # a leak would be caught


def test_sdpa_varlen_leaves_padded_batches_and_generation_to_sdpa(attention_model):
    """Batches that are not one packed row (even when they carry sequence boundaries) keep sdpa."""
    import torch

    varlen, sdpa = _model(attention_model, "sdpa_varlen"), _model(attention_model, "sdpa")
    torch.manual_seed(0)
    ids = torch.randint(4, varlen.config.vocab_size, (2, 17))
    mask = torch.ones_like(ids)
    mask[1, 11:] = 0
    bounds = torch.tensor([0, 11, 17], dtype=torch.int32)  # per-example attention would be wrong here
    with torch.no_grad():
        ours = varlen(input_ids=ids, attention_mask=mask, cu_seq_lens_q=bounds, cu_seq_lens_k=bounds).logits
        assert torch.equal(ours, sdpa(input_ids=ids, attention_mask=mask).logits)
        prompt = ids[:1, :5]
        assert torch.equal(
            varlen.generate(prompt, max_new_tokens=4, do_sample=False),
            sdpa.generate(prompt, max_new_tokens=4, do_sample=False),
        )


def test_sdpa_varlen_keeps_the_mask_for_a_sliding_window(tiny_llama, tmp_path):
    """A window shorter than the examples: per-example causal attention would see too far back."""
    import torch
    from transformers import AutoConfig, MistralConfig, MistralForCausalLM

    llama = AutoConfig.from_pretrained(tiny_llama).to_dict()
    config = MistralConfig(**{k: v for k, v in llama.items() if k in MistralConfig().to_dict()})
    config.sliding_window = 8
    torch.manual_seed(0)
    MistralForCausalLM(config).save_pretrained(tmp_path)
    varlen, sdpa = _model(tmp_path, "sdpa_varlen"), _model(tmp_path, "sdpa")
    sequences = [torch.randint(4, config.vocab_size, (n,)) for n in PACKED_LENGTHS]
    with torch.no_grad():
        ours = varlen(**_packed(sequences), use_cache=False).logits[0]
        theirs = sdpa(**_packed(sequences), use_cache=False).logits[0]
        varlen.config.sliding_window = None  # what ignoring the window would give
        unwindowed = varlen(**_packed(sequences), use_cache=False).logits[0]
    assert (ours - theirs).abs().max() < 1e-5
    assert (theirs - unwindowed).abs().max() > 1e-3  # the window matters for these lengths


def test_padding_free_training_picks_sdpa_varlen_with_the_same_loss(
    tiny_llama, dataset, tmp_path, monkeypatch
):
    """Packing with `model.attn_implementation` unset trains on sdpa_varlen: one causal attention per
    example, with the loss and gradients of TRL's dense block-diagonal sdpa; a recipe's choice is kept."""
    import torch

    from hubkit.train import build_sft_config, build_trainer, load_dataset_artifact, resolve_base_model

    data = load_dataset_artifact(dataset)

    def trainer(*overrides: str):
        recipe = load_recipe(TINY, [f"model.name_or_path={tiny_llama}", *overrides])
        return build_trainer(recipe, resolve_base_model(recipe), data, build_sft_config(recipe, tmp_path))

    varlen, dense = trainer(), trainer("model.attn_implementation=sdpa")
    assert varlen.model.config._attn_implementation == "sdpa_varlen"
    assert dense.model.config._attn_implementation == "sdpa"
    assert trainer("training.packing=false").model.config._attn_implementation == "sdpa"
    assert trainer("model.attn_implementation=eager").model.config._attn_implementation == "eager"

    rows = len(varlen.train_dataset)
    batch = varlen.data_collator([varlen.train_dataset[i] for i in (rows - 2, rows - 1)])
    examples = len(batch["cu_seq_lens_q"]) - 1
    assert examples > 2  # several examples in the flattened row

    calls: list[tuple[int, bool, bool]] = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(query, key, value, attn_mask=None, **kwargs):
        calls.append((query.shape[2], attn_mask is None, kwargs.get("is_causal", False)))
        return sdpa(query, key, value, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    results = []
    for t in (varlen, dense):
        calls.clear()
        t.model.train()
        torch.manual_seed(0)  # the same LoRA dropout masks for both
        loss = t.compute_loss(t.model, dict(batch))
        loss.backward()
        grads = {n: p.grad.clone() for n, p in t.model.named_parameters() if p.grad is not None}
        results.append((loss.item(), grads, list(calls)))
    (loss, grads, calls_varlen), (loss_dense, grads_dense, calls_dense) = results
    layers = varlen.model.config.num_hidden_layers
    assert len(calls_varlen) == layers * examples and all(m and c for _, m, c in calls_varlen)
    assert sum(n for n, _, _ in calls_varlen) == layers * batch["input_ids"].shape[1]
    assert len(calls_dense) == layers and not any(m for _, m, _ in calls_dense)  # one masked call a layer
    assert abs(loss - loss_dense) < 1e-5, (loss, loss_dense)
    assert grads.keys() == grads_dense.keys() and grads
    assert all((grads[n] - grads_dense[n]).abs().max() < 1e-5 for n in grads)
