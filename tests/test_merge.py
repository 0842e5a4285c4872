"""Merging behind gates, on tiny models: streaming adapter merges equal peft's
merge_and_unload, model merges, the taint gate, the equivalence check, and one-line refusals
that leave nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from certificates import complete_certificate
from huggingface_hub import HfApi
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from test_decontam import run_cli
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

from hubkit.artifacts import read_json, sha256_file, write_json, write_manifest
from hubkit.errors import HubkitError
from hubkit.merge import (
    load_registry,
    merge_adapter,
    merge_models,
    read_lineage,
    require_verified,
    verify_merge,
)
from hubkit.merge.checkpoint import Checkpoint, ShardWriter
from hubkit.publish import push_folder
from hubkit.recipe import TaintEntry, recipe_from_dict
from hubkit.tiny import build_tiny_llama, sample_corpus

PROBE = "Natalia sold clips to 48 of her friends in April."
TAINTED = "truthfulqa/truthful_qa"  # in the shipped registry


def _card(folder: Path, **metadata) -> Path:
    (folder / "README.md").write_text(f"---\n{yaml.safe_dump(metadata)}---\n# model\n")
    return folder


def _known(source: Path, dest: Path, **metadata) -> Path:
    """A copy of a model with a card that lists its training data (so the gate knows it)."""
    shutil.copytree(source, dest)
    return _card(dest, **(metadata or {"datasets": ["openai/gsm8k"]}))


_CERTIFICATE = complete_certificate("0" * 64, 10)


def _adapter(base: Path, out: Path, *, seed: int = 1, certificate=None, **lora) -> Path:
    """A peft LoRA adapter with non-zero B (so the delta is real) and a hubkit provenance.json."""
    model = AutoModelForCausalLM.from_pretrained(base)
    config = {
        "r": 4,
        "lora_alpha": 8,
        "target_modules": ["q_proj", "v_proj", "gate_proj", "down_proj"],
        **lora,
    }
    peft_model = get_peft_model(model, LoraConfig(**config))
    torch.manual_seed(seed)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name or "lora_embedding_B" in name:
            param.data.normal_(0, 0.05)
    peft_model.save_pretrained(out)
    provenance = {  # the shape `hubkit train` writes
        "base_model": {"name_or_path": str(base), "revision": None, "resolved_revision": None},
        "leak_certificate": _CERTIFICATE if certificate is None else certificate,
        "allow_unchecked_data": certificate is False,
        "recipe": {"name": "tiny", "data": {"sources": [{"name": "gsm8k", "hub_id": "openai/gsm8k"}]}},
        "versions": {},
    }
    if certificate is False:
        provenance["leak_certificate"] = None
    write_json(out / "provenance.json", provenance)
    write_manifest(out, "adapter")
    return out


def _logits(folder_or_model, tokenizer_dir: Path) -> torch.Tensor:
    from transformers import AutoTokenizer

    model = folder_or_model
    if isinstance(model, Path):
        model = AutoModelForCausalLM.from_pretrained(model, dtype="auto")
    tokens = AutoTokenizer.from_pretrained(tokenizer_dir)(PROBE, return_tensors="pt")
    with torch.inference_mode():
        return model.eval()(**tokens).logits.float()


def _peft_merged(base: Path, adapter: Path, dtype=None):
    from peft import PeftModel

    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype or "auto")
    return PeftModel.from_pretrained(model, adapter).merge_and_unload()


def _nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.tmp")]


@pytest.fixture(scope="module")
def base(tiny_llama, tmp_path_factory) -> Path:
    return _known(tiny_llama, tmp_path_factory.mktemp("known") / "base")


@pytest.fixture(scope="module")
def other_model(tmp_path_factory) -> Path:
    """A second tiny Llama of the same shape (another seed), with a card."""
    folder = build_tiny_llama(
        tmp_path_factory.mktemp("other") / "m", sample_corpus(), seed=7, max_shard_size="150KB"
    )
    return _card(folder, datasets=["openai/gsm8k"], base_model="hubkit/tiny-llama")


@pytest.fixture(scope="module")
def merged(base, tmp_path_factory) -> tuple[Path, Path]:
    """(adapter, merged folder) shared by the tests that only read a merge."""
    root = tmp_path_factory.mktemp("merged")
    adapter = _adapter(base, root / "adapter")
    return adapter, merge_adapter(adapter, root / "out")


@pytest.mark.parametrize(
    "lora",
    [
        {},
        {"use_rslora": True, "target_modules": ["q_proj", "o_proj", "embed_tokens", "lm_head"]},
        {
            "rank_pattern": {"q_proj": 2},
            "alpha_pattern": {"v_proj": 32},
            "target_modules": ["q_proj", "v_proj"],
        },
    ],
    ids=["plain", "rslora-embeddings", "rank-alpha-patterns"],
)
def test_adapter_merge_equals_peft_merge_and_unload(base, tmp_path, lora):
    assert len(list(base.glob("*.safetensors"))) >= 4
    adapter = _adapter(base, tmp_path / "adapter", **lora)
    out = merge_adapter(adapter, tmp_path / "merged")

    reference = _peft_merged(base, adapter)
    ours = AutoModelForCausalLM.from_pretrained(out)
    want, got = reference.state_dict(), ours.state_dict()
    assert want.keys() == got.keys()
    assert max(float((want[k] - got[k]).abs().max()) for k in want) <= 1e-6
    assert float((_logits(reference, out) - _logits(out, out)).abs().max()) <= 1e-5

    index = read_json(out / "model.safetensors.index.json")
    assert sorted(set(index["weight_map"].values())) == sorted(p.name for p in out.glob("*.safetensors"))
    assert len(set(index["weight_map"].values())) == len(list(base.glob("*.safetensors")))
    for name in (
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "provenance.json",
        "manifest.json",
    ):
        assert (out / name).is_file(), name
    manifest = read_json(out / "manifest.json")
    assert manifest["kind"] == "merged" and manifest["method"] == "lora" and manifest["verification"] is None
    provenance = read_json(out / "provenance.json")
    assert provenance["base_model"] == base.name and provenance["adapter"] == adapter.name  # no local path
    assert provenance["leak_certificate"]["passed"] is True
    assert provenance["adapter_provenance"]["recipe"]["name"] == "tiny"


def _bf16(base: Path, folder: Path) -> Path:
    """A bf16 copy of a model, with its tokenizer and a card the gate knows."""
    AutoModelForCausalLM.from_pretrained(base).to(torch.bfloat16).save_pretrained(
        folder, max_shard_size="60KB"
    )
    shutil.copy(base / "tokenizer.json", folder)
    shutil.copy(base / "tokenizer_config.json", folder)
    return _card(folder, datasets=["openai/gsm8k"])


def test_bf16_base_keeps_its_dtype_and_verifies(base, tmp_path):
    bf16 = _bf16(base, tmp_path / "bf16")
    adapter = _adapter(bf16, tmp_path / "adapter")
    out = merge_adapter(adapter, tmp_path / "merged")

    assert {t.dtype for t in AutoModelForCausalLM.from_pretrained(out, dtype="auto").parameters()} == {
        torch.bfloat16
    }
    result = verify_merge(out)
    assert result["passed"] and result["dtype"] == "BF16", result["problems"]
    reference = _logits(_peft_merged(bf16, adapter, torch.bfloat16), out)
    assert float((reference - _logits(out, out)).abs().max()) <= result["tolerance"]


def test_bf16_verify_records_whether_the_adapter_effect_shows(base, tmp_path, monkeypatch):
    """In half precision the tolerance can exceed what the adapter changes: the record says
    whether the check could have seen the adapter at all."""
    from hubkit.merge import verify

    bf16 = _bf16(base, tmp_path / "bf16")
    adapter = _adapter(bf16, tmp_path / "adapter", lora_alpha=64)  # an effect well above the tolerance
    out = merge_adapter(adapter, tmp_path / "merged")
    good = verify_merge(out)
    assert good["passed"], good["problems"]
    assert good["adapter_effect_visible"] and good["adapter_effect"] > good["tolerance"]
    assert good["adapter_effect"] > 10 * good["max_abs_logit_diff"]
    monkeypatch.setitem(verify.TOLERANCES, "BF16", (2 * good["adapter_effect"], 0.0))
    loose = verify_merge(out)
    assert loose["passed"] and loose["adapter_effect_visible"] is False


def test_fan_in_fan_out_conv1d_adapter(tmp_path):
    """GPT-2 stores its projections transposed (Conv1D): peft's fan_in_fan_out."""
    config = GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=128, n_positions=64)
    torch.manual_seed(0)
    base = tmp_path / "gpt2"
    GPT2LMHeadModel(config).save_pretrained(base, max_shard_size="40KB")
    adapter = _adapter(base, tmp_path / "adapter", target_modules=["c_attn", "c_fc"], fan_in_fan_out=True)
    out = merge_adapter(adapter, tmp_path / "merged", allow_unverified=[str(base)])
    want = _peft_merged(base, adapter).state_dict()
    got = AutoModelForCausalLM.from_pretrained(out).state_dict()
    assert max(float((want[k] - got[k]).abs().max()) for k in want) <= 1e-6


def test_verify_merge_records_the_check_and_gates_publishing(local_hub, merged, tmp_path):
    from huggingface_hub import HfApi

    _, out = merged
    folder = tmp_path / "merged"
    shutil.copytree(out, folder)
    with pytest.raises(HubkitError, match="not verified; run `hubkit verify merge"):
        require_verified(folder)
    with pytest.raises(HubkitError, match="not verified"):
        push_folder(folder, "alice/unverified-merge")
    assert not HfApi().repo_exists("alice/unverified-merge")

    result = verify_merge(folder)
    assert result["passed"], result["problems"]
    assert result["max_abs_logit_diff"] <= 1e-4 and result["untouched_tensors_checked"] > 0
    assert read_json(folder / "verification.json") == result
    manifest = read_json(folder / "manifest.json")
    assert manifest["verification"]["passed"] is True and "verification.json" in manifest["files"]
    assert manifest["method"] == "lora" and manifest["inputs"]  # fields kept on rewrite
    assert require_verified(folder)["passed"]
    assert push_folder(folder, "alice/verified-merge").created_commit

    # The probes go through the folder's tokenizer: changing it needs a new check.
    tokenizer_config = folder / "tokenizer_config.json"
    original = tokenizer_config.read_bytes()
    write_json(tokenizer_config, read_json(tokenizer_config) | {"model_max_length": 7})
    with pytest.raises(HubkitError, match="files changed or added since"):
        require_verified(folder)
    tokenizer_config.write_bytes(original)
    assert require_verified(folder)["passed"]

    # An untouched tensor that drifts from the base fails the check, naming it.
    shard = folder / read_json(folder / "model.safetensors.index.json")["weight_map"]["model.norm.weight"]
    tensors = load_file(shard)
    tensors["model.norm.weight"] = tensors["model.norm.weight"] + 1e-3
    save_file(tensors, shard, metadata={"format": "pt"})
    with pytest.raises(HubkitError, match="files changed or added since"):
        require_verified(folder)
    failed = verify_merge(folder)
    assert not failed["passed"]
    assert any(p.startswith("model.norm.weight: untouched by the adapter") for p in failed["problems"])
    with pytest.raises(HubkitError, match="failed its equivalence check"):
        require_verified(folder)


def test_a_merge_from_the_same_inputs_is_kept_unless_forced(merged, tmp_path):
    adapter, _ = merged
    out = merge_adapter(adapter, tmp_path / "out")
    verify_merge(out)
    stamp = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert merge_adapter(adapter, tmp_path / "out") == out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamp  # nothing rewritten
    assert require_verified(out)["passed"]

    merge_adapter(adapter, tmp_path / "out", force=True)
    assert not (out / "verification.json").exists()  # a fresh merge, not yet verified


def test_max_shard_size_reshards_without_changing_weights(base, merged, tmp_path):
    adapter, out = merged
    small = merge_adapter(adapter, tmp_path / "small", max_shard_size="40KB")
    assert len(list(small.glob("*.safetensors"))) > len(list(out.glob("*.safetensors")))
    want = AutoModelForCausalLM.from_pretrained(out).state_dict()
    got = AutoModelForCausalLM.from_pretrained(small).state_dict()
    assert all(torch.equal(want[k], got[k]) for k in want)


def _no_copy_file_range(*args):
    raise OSError(18, "Invalid cross-device link")


@pytest.mark.parametrize(
    "copy_file_range",
    [os.copy_file_range, _no_copy_file_range, lambda *args: 0],
    ids=["kernel", "fails", "copies-nothing"],
)
def test_shard_writer_files_equal_save_file_byte_for_byte(tmp_path, monkeypatch, copy_file_range):
    """Headers planned from the source, tensors streamed or copied (by the kernel, or by pread where
    copy_file_range fails or copies nothing): the same bytes as save_file, for every dtype order."""
    monkeypatch.setattr(os, "copy_file_range", copy_file_range)
    gen = torch.Generator().manual_seed(0)
    shards = [
        {
            "b.weight": torch.randn(8, 4, generator=gen),
            "a.scale": torch.randn(3).to(torch.bfloat16),
            "a.ids": torch.arange(5),
            "z.flag": torch.tensor([True, False]),
            "m.scalar": torch.tensor(2.5),
            "q.scales": torch.arange(6, dtype=torch.uint8).view(torch.float8_e8m0fnu),
            "q.weight": torch.arange(6, dtype=torch.uint8).view(torch.float8_e4m3fn),
            "ß.norm": torch.randn(2, generator=gen),  # non-ASCII names are written as UTF-8
        },
        {"c.weight": torch.randn(16, 8, generator=gen).half(), "d.weight": torch.randn(30, generator=gen)},
    ]
    src = tmp_path / "src"
    src.mkdir()
    weight_map = {}
    for i, tensors in enumerate(shards):
        save_file(tensors, src / f"s{i}.safetensors", metadata={"format": "pt"})
        weight_map |= dict.fromkeys(tensors, f"s{i}.safetensors")
    write_json(src / "model.safetensors.index.json", {"metadata": {}, "weight_map": weight_map})
    changed = {"b.weight": shards[0]["b.weight"] * 2, "c.weight": shards[1]["c.weight"] + 1}

    for max_bytes, layout in ((None, [list(shards[0]), list(shards[1])]), (120, None)):
        out = tmp_path / f"out-{max_bytes}"
        out.mkdir()
        writer = ShardWriter(Checkpoint(src), out, max_bytes)
        writer.write(changed.get)
        sizes = [sum(Checkpoint(src).tensors[n].nbytes for n in names) for names in writer.shards]
        if layout:
            assert [sorted(names) for names in writer.shards] == [sorted(names) for names in layout]
        else:  # re-sharded: no shard past 120 bytes unless one tensor alone is
            assert len(writer.shards) > 2
            assert all(
                size <= 120 or len(names) == 1 for size, names in zip(sizes, writer.shards, strict=True)
            )
        index = read_json(out / "model.safetensors.index.json")["weight_map"]
        assert sorted(index) == sorted(weight_map)
        for i, names in enumerate(writer.shards):
            file = out / f"model-{i + 1:05d}-of-{len(writer.shards):05d}.safetensors"
            want = {n: changed.get(n, shards[0 if n in shards[0] else 1][n]) for n in names}
            save_file(want, tmp_path / "want.safetensors", metadata={"format": "pt"})
            assert file.read_bytes() == (tmp_path / "want.safetensors").read_bytes()
            assert all(index[n] == file.name for n in names)

    wrong = tmp_path / "wrong"
    wrong.mkdir()
    with pytest.raises(
        HubkitError, match=r"^b\.weight: merged to \[8, 4\] torch\.float16, not .* \[8, 4\] F32$"
    ):
        ShardWriter(Checkpoint(src), wrong).write({"b.weight": shards[0]["b.weight"].half()}.get)


# --- the taint gate -------------------------------------------------------------------------


def test_tainted_dataset_in_card_is_refused_and_nothing_written(base, tmp_path):
    tainted = _known(base, tmp_path / "tainted", datasets=["openai/gsm8k", "TruthfulQA/truthful_qa"])
    out = tmp_path / "merged"
    with pytest.raises(HubkitError) as err:
        merge_models([str(base), str(tainted)], out, allow_unverified=[str(tainted)])
    message = str(err.value)
    assert message.startswith(
        f"{tainted}: refused by the taint gate: its training dataset TruthfulQA/truthful_qa"
    )
    assert "it is the TruthfulQA benchmark" in message and "https://arxiv.org/abs/2109.07958" in message
    assert "\n" not in message
    _nothing_written(out)


@pytest.mark.parametrize("copy", ["hf-cache-snapshot", "config-name-or-path"])
def test_a_local_copy_of_a_listed_model_is_refused_even_when_allowed(tiny_llama, base, tmp_path, copy):
    """A copy without a card is of unknown provenance; it must be refused as the model it
    copies, which no override lets through."""
    listed = "leaky-org/Leaky-Model"
    registry = load_registry(entries=[TaintEntry(id=listed, reason="planted", source="https://x")])
    if copy == "hf-cache-snapshot":
        folder = tmp_path / "hub" / "models--leaky-org--Leaky-Model" / "snapshots" / ("a" * 40)
        shutil.copytree(tiny_llama, folder)
    else:
        folder = tmp_path / "copy"
        shutil.copytree(tiny_llama, folder)
        write_json(folder / "config.json", read_json(folder / "config.json") | {"_name_or_path": listed})
    out = tmp_path / "out"
    with pytest.raises(HubkitError) as err:
        merge_models([str(base), str(folder)], out, registry=registry, allow_unverified=[str(folder)])
    assert str(err.value) == (
        f"{folder}: refused by the taint gate: the model {listed} is in the taint registry (planted; https://x)"
    )
    _nothing_written(out)


def test_hubkit_adapter_lineage_is_checked(base, tmp_path):
    adapter = _adapter(base, tmp_path / "adapter")
    provenance = read_json(adapter / "provenance.json")
    provenance["recipe"]["data"]["sources"].append({"name": "tqa", "hub_id": TAINTED})
    write_json(adapter / "provenance.json", provenance)
    assert read_lineage(adapter).ancestors == [str(base)]
    with pytest.raises(
        HubkitError, match=rf"{adapter}: refused .* its training dataset {TAINTED} is in the taint"
    ):
        merge_adapter(adapter, tmp_path / "out")
    _nothing_written(tmp_path / "out")


def test_recipe_registry_entries_refuse_an_ancestor(base, other_model, tmp_path):
    recipe = recipe_from_dict(
        {
            "name": "r",
            "model": {"name_or_path": "x"},
            "merge": {
                "taint_registry": [{"id": "hubkit/tiny-llama", "reason": "test entry", "source": "https://x"}]
            },
        }
    )
    registry = load_registry(entries=recipe.merge.taint_registry)
    assert {e.id for e in registry} >= {TAINTED, "hubkit/tiny-llama"}
    with pytest.raises(
        HubkitError, match="its ancestor model hubkit/tiny-llama is in the taint registry \\(test entry"
    ):
        merge_models([str(base), str(other_model)], tmp_path / "out", registry=registry)
    _nothing_written(tmp_path / "out")


def test_leak_certificates_of_hubkit_trained_inputs(base, tmp_path):
    failed = _adapter(base, tmp_path / "failed", certificate={"passed": False})
    with pytest.raises(HubkitError, match="its training data failed the leak check"):
        merge_adapter(failed, tmp_path / "out", allow_unverified=[str(failed)])
    unchecked = _adapter(base, tmp_path / "unchecked", certificate=False)
    with pytest.raises(
        HubkitError,
        match=r"without a leak certificate \(its data was not checked\); pass --allow-unverified",
    ):
        merge_adapter(unchecked, tmp_path / "out")
    _nothing_written(tmp_path / "out")
    out = merge_adapter(unchecked, tmp_path / "out", allow_unverified=[str(unchecked)])
    assert read_json(out / "provenance.json")["allow_unverified"] == [unchecked.name]


@pytest.mark.parametrize(
    ("probe", "error"),
    [
        ("flipped", r"refused by the taint gate: its leak certificate differs from .*leak_certificate\.json"),
        ("bare", r"its leak certificate missing field 'dataset_sha256'.*; pass --allow-unverified"),
        ("provenance deleted", r"unknown provenance .*; pass --allow-unverified"),
    ],
)
def test_the_taint_gate_recomputes_an_adapters_certificate(base, tmp_path, probe, error):
    from hubkit.data import write_rows
    from hubkit.portable import remember_location

    dataset = tmp_path / "dataset-clean"  # its leak check failed
    dataset.mkdir()
    row = {"instruction": "q", "input": "", "output": "a", "data_source": "x"}
    write_rows([row], dataset / "data.parquet")
    data_sha = sha256_file(dataset / "data.parquet")
    failed = _CERTIFICATE | {"passed": False, "dataset_sha256": data_sha}
    write_json(dataset / "leak_certificate.json", failed)
    remember_location(data_sha, dataset)
    certificate = {"passed": True} if probe == "bare" else _CERTIFICATE | {"dataset_sha256": data_sha}
    adapter = _adapter(base, tmp_path / "adapter", certificate=certificate)
    if probe == "provenance deleted":  # the card still lists a clean Hub dataset
        (adapter / "provenance.json").unlink()
        (adapter / "README.md").write_text("---\ndatasets:\n- openai/gsm8k\n---\n# adapter\n")
    with pytest.raises(HubkitError, match=error):
        merge_adapter(adapter, tmp_path / "out", base=str(base))
    _nothing_written(tmp_path / "out")


def test_unknown_provenance_is_refused_unless_allowed_and_recorded(tiny_llama, base, tmp_path):
    adapter = _adapter(tiny_llama, tmp_path / "adapter")  # its base has no card, no provenance
    out = tmp_path / "out"
    with pytest.raises(HubkitError) as err:
        merge_adapter(adapter, out)
    assert str(err.value) == (
        f"{tiny_llama}: refused by the taint gate: unknown provenance (no hubkit provenance.json, and no "
        f"model card metadata listing its training datasets); pass --allow-unverified {tiny_llama} to merge "
        "it anyway (recorded in the provenance and the card)"
    )
    _nothing_written(out)

    merge_adapter(adapter, out, allow_unverified=[str(tiny_llama)])
    provenance = read_json(out / "provenance.json")
    assert provenance["allow_unverified"] == [tiny_llama.name]  # local inputs by name, not path
    records = {r["id"]: r for r in provenance["taint_gate"]["inputs"]}
    assert (
        records[tiny_llama.name]["verdict"] == "allowed-unverified" and records[tiny_llama.name]["override"]
    )
    assert records[adapter.name]["verdict"] == "clean"
    assert records[adapter.name]["datasets"] == ["openai/gsm8k"]

    # The override travels: a model merged from an unverified input is itself unverified.
    lineage = read_lineage(out)
    assert lineage.unverified_ancestors == [tiny_llama.name] and tiny_llama.name in lineage.ancestors
    with pytest.raises(HubkitError, match=rf"merged from unverified input\(s\) {tiny_llama.name}"):
        merge_models([str(out), str(base)], tmp_path / "again")


def test_a_provenance_json_hubkit_did_not_write_is_unknown_provenance(tiny_llama, tmp_path):
    foreign = tmp_path / "foreign"
    shutil.copytree(tiny_llama, foreign)
    write_json(foreign / "provenance.json", {})
    adapter = _adapter(foreign, tmp_path / "adapter")
    out = tmp_path / "out"
    with pytest.raises(HubkitError) as err:
        merge_adapter(adapter, out)
    assert str(err.value).startswith(f"{foreign}: refused by the taint gate: unknown provenance")
    _nothing_written(out)

    merge_adapter(adapter, out, allow_unverified=[str(foreign)])
    record = read_json(out / "provenance.json")["taint_gate"]["inputs"][0]
    assert record["id"] == foreign.name and record["provenance"] == "none"
    assert record["verdict"] == "allowed-unverified" and record["override"]


@pytest.mark.parametrize(
    ("provenance", "source"),
    [
        ({"datasets": []}, "none"),
        ([], "none"),
        ({"kind": "merged", "inputs": []}, "none"),  # no taint gate records
        ({"base_model": {"name_or_path": "x"}}, "none"),  # no leak certificate: not `hubkit train`'s
        ({"kind": "base-model", "datasets": []}, "hubkit provenance"),  # train.py's tiny base
    ],
)
def test_only_provenance_of_the_kinds_hubkit_writes_counts(tmp_path, provenance, source):
    write_json(tmp_path / "provenance.json", provenance)
    assert read_lineage(tmp_path).source == source


# --- model merges ---------------------------------------------------------------------------


def test_linear_and_task_arithmetic_merges(base, other_model, tmp_path):
    a = AutoModelForCausalLM.from_pretrained(base).state_dict()
    b = AutoModelForCausalLM.from_pretrained(other_model).state_dict()

    linear = merge_models([str(base), str(other_model)], tmp_path / "linear", weights=[3, 1])
    got = AutoModelForCausalLM.from_pretrained(linear).state_dict()
    assert max(float((got[k] - (0.75 * a[k] + 0.25 * b[k])).abs().max()) for k in a) <= 1e-6
    provenance = read_json(linear / "provenance.json")
    assert [r.get("weight") for r in provenance["inputs"]] == [3, 1]
    assert verify_merge(linear)["passed"] and require_verified(linear)

    task = merge_models(
        [str(other_model)], tmp_path / "task", weights=[0.5], method="task_arithmetic", base=str(base)
    )
    got = AutoModelForCausalLM.from_pretrained(task).state_dict()
    assert max(float((got[k] - (a[k] + 0.5 * (b[k] - a[k]))).abs().max()) for k in a) <= 1e-6
    assert [r["role"] for r in read_json(task / "provenance.json")["inputs"]] == ["base", "model"]


@pytest.fixture(scope="module")
def verified(merged, tmp_path_factory) -> Path:
    """A copy of the shared merge that passed `hubkit verify merge`."""
    folder = tmp_path_factory.mktemp("verified") / "merged"
    shutil.copytree(merged[1], folder)
    assert verify_merge(folder)["passed"]
    return folder


def _remanifest(folder: Path, **changes) -> None:
    """Rewrite a merged model's manifest over its current files, as a forger would."""
    manifest = read_json(folder / "manifest.json")
    own = ("kind", "inputs", "files", "content_hash", "hubkit_version", "schema_version")
    fields = {k: v for k, v in manifest.items() if k not in own}
    write_manifest(folder, changes.pop("kind", "merged"), manifest["inputs"], **(fields | changes))


def _fail_check(folder: Path) -> dict:
    """Make the recorded equivalence check a failing one (figures, verdict and summary agree)."""
    result = read_json(folder / "verification.json")
    result |= {"passed": False, "max_abs_logit_diff": 3.0, "problems": ["max |logit diff| 3 exceeds"]}
    write_json(folder / "verification.json", result)
    summary = {k: result[k] for k in ("passed", "max_abs_logit_diff", "tolerance", "weights_sha256")}
    _remanifest(folder, verification=summary)
    return summary


@pytest.mark.parametrize(
    ("probe", "error"),
    [
        ("manifest says passed", r"verification summary differs from verification\.json"),
        ("both say passed", r"max \|logit diff\| 3\.0 is not within the tolerance"),
        ("kind model", r"manifest\.json: kind 'model' is not a hubkit artifact"),
        ("manifest deleted", r"provenance\.json: a hubkit merged without its manifest\.json"),
        ("bin added", r"pytorch_model\.bin: not part of the artifact"),
        ("code added and listed", r"files changed or added since `hubkit verify merge`"),
        ("shard changed and listed", r"files changed or added since `hubkit verify merge`"),
    ],
)
def test_push_recomputes_a_merged_models_claims(local_hub, verified, tmp_path, probe, error):
    folder = tmp_path / "merged"
    shutil.copytree(verified, folder)
    if probe == "manifest says passed":
        summary = _fail_check(folder)
        manifest = read_json(folder / "manifest.json")
        write_json(folder / "manifest.json", manifest | {"verification": summary | {"passed": True}})
    elif probe == "both say passed":
        summary = _fail_check(folder)
        result = read_json(folder / "verification.json") | {"passed": True, "problems": []}
        write_json(folder / "verification.json", result)
        _remanifest(folder, verification=summary | {"passed": True})
    elif probe == "kind model":
        _remanifest(folder, kind="model")
    elif probe == "manifest deleted":
        (folder / "manifest.json").unlink()
    elif probe == "bin added":
        (folder / "pytorch_model.bin").write_bytes(b"\0" * 256)
    elif probe == "code added and listed":
        (folder / "modeling_evil.py").write_text("import os\n")
        _remanifest(folder)
    else:
        shard = sorted(folder.glob("*.safetensors"))[0]
        tensors = load_file(shard)
        name = sorted(tensors)[0]
        save_file({**tensors, name: tensors[name] + 1}, shard, metadata={"format": "pt"})
        _remanifest(folder)
    repo_id = f"alice/gate-merged-{probe.replace(' ', '-')}"
    with pytest.raises(HubkitError, match=error):
        push_folder(folder, repo_id)
    assert not HfApi().repo_exists(repo_id)


def test_a_method_added_to_the_table_merges_verifies_and_gets_its_card(
    base, other_model, tmp_path, monkeypatch
):
    """Adding a merge method is one entry in hubkit.methods: the merge, the check and the card read it."""
    from hubkit.cards import card_context
    from hubkit.methods import MERGE_METHODS, MergeMethod

    def weighted_sum(weights, tensors):
        return sum(w * t.float() for w, t in zip(weights, tensors, strict=True)).to(tensors[0].dtype)

    method = MergeMethod(
        "weighted_sum", "sum(w_i * W_i)", "A `weighted_sum` of {n} models,", "models", combine=weighted_sum
    )
    monkeypatch.setitem(MERGE_METHODS, "weighted_sum", method)
    hub = {"merged_repo": "alice/summed", "license": "mit"}
    recipe = recipe_from_dict({"name": "sum", "model": {"name_or_path": str(base)}, "hub": hub}).to_dict()
    out = merge_models(
        [str(base), str(other_model)],
        tmp_path / "sum",
        weights=[0.5, 0.5],
        method="weighted_sum",
        recipe=recipe,
    )
    a = AutoModelForCausalLM.from_pretrained(base).state_dict()
    b = AutoModelForCausalLM.from_pretrained(other_model).state_dict()
    got = AutoModelForCausalLM.from_pretrained(out).state_dict()
    assert max(float((got[k] - 0.5 * (a[k] + b[k])).abs().max()) for k in a) <= 1e-6
    assert verify_merge(out)["check"].startswith("tensor names, shapes and dtypes")
    card = card_context("merged", out)
    assert card.intro == "A `weighted_sum` of 2 models," and "merge" in card.metadata().tags


def test_an_unverified_merged_input_is_refused(base, merged, tmp_path):
    fold = tmp_path / "fold"
    shutil.copytree(merged[1], fold)
    out = tmp_path / "out"
    with pytest.raises(HubkitError) as err:
        merge_models([str(fold), str(base)], out)
    assert str(err.value).startswith(f"{fold.resolve()}: merged model not verified")
    _nothing_written(out)
    assert verify_merge(fold)["passed"]
    assert merge_models([str(fold), str(base)], out) == out


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"method": "task_arithmetic"}, "needs --base"),
        ({"weights": [1.0]}, "1 weight\\(s\\) for 2 model\\(s\\)"),
        ({"weights": [1.0, -1.0]}, "do not sum to 0"),
    ],
)
def test_model_merge_argument_errors(base, other_model, tmp_path, kwargs, error):
    with pytest.raises(HubkitError, match=error):
        merge_models([str(base), str(other_model)], tmp_path / "out", **kwargs)


def test_mismatched_shapes_and_architectures_are_refused(base, tmp_path):
    wide = _known(
        build_tiny_llama(
            tmp_path / "wide-src", sample_corpus(), intermediate_size=96, max_shard_size="100KB"
        ),
        tmp_path / "wide",
    )
    with pytest.raises(
        HubkitError, match=rf"{wide}: tensor model.layers.0.mlp.down_proj.weight has shape \[64, 96\]"
    ):
        merge_models([str(base), str(wide)], tmp_path / "out")
    gpt2 = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=128)).save_pretrained(gpt2)
    _card(gpt2, datasets=["openai/gsm8k"])
    with pytest.raises(HubkitError, match=f"{gpt2}: model_type 'gpt2' differs from {base}'s 'llama'"):
        merge_models([str(base), str(gpt2)], tmp_path / "out")
    adapter = _adapter(wide, tmp_path / "adapter")
    with pytest.raises(
        HubkitError, match="LoRA update of model.layers.0.mlp.down_proj.weight has shape \\[64, 96\\]"
    ):
        merge_adapter(adapter, tmp_path / "out", base=str(base))
    _nothing_written(tmp_path / "out")


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("use_dora", True, "uses DoRA"),
        ("modules_to_save", ["lm_head"], "uses modules_to_save"),
        ("init_lora_weights", "pissa", "rewrote the base weights"),
        ("peft_type", "IA3", "only LoRA merges"),
    ],
)
def test_unsupported_adapter_features_are_refused(merged, tmp_path, key, value, error):
    adapter = tmp_path / "adapter"
    shutil.copytree(merged[0], adapter)
    config = read_json(adapter / "adapter_config.json")
    write_json(adapter / "adapter_config.json", {**config, key: value})
    with pytest.raises(HubkitError, match=f"{adapter}: .*{error}"):
        merge_adapter(adapter, tmp_path / "out")


def test_base_is_fetched_from_the_hub(local_hub, base, tmp_path):
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo("alice/tiny-merge-base")
    api.upload_folder(repo_id="alice/tiny-merge-base", folder_path=base)
    adapter = _adapter(base, tmp_path / "adapter")
    out = merge_adapter(adapter, tmp_path / "out", base="alice/tiny-merge-base")
    provenance = read_json(out / "provenance.json")
    base_record = provenance["inputs"][0]
    assert base_record["id"] == "alice/tiny-merge-base" and len(base_record["revision"]) == 40
    assert provenance["taint_gate"]["inputs"][0]["provenance"] == "model card"
    want = _peft_merged(base, adapter).state_dict()
    got = AutoModelForCausalLM.from_pretrained(out).state_dict()
    assert max(float((want[k] - got[k]).abs().max()) for k in want) <= 1e-6

    # Without --base, the commit the adapter was trained on is fetched, not today's main.
    trained_on = api.repo_info("alice/tiny-merge-base").sha
    api.upload_file(repo_id="alice/tiny-merge-base", path_or_fileobj=b"{}", path_in_repo="extra.json")
    config = read_json(adapter / "adapter_config.json") | {"base_model_name_or_path": "alice/tiny-merge-base"}
    write_json(adapter / "adapter_config.json", config)
    provenance = read_json(adapter / "provenance.json")
    provenance["base_model"] |= {"name_or_path": "alice/tiny-merge-base", "resolved_revision": trained_on}
    write_json(adapter / "provenance.json", provenance)
    pinned = read_json(merge_adapter(adapter, tmp_path / "pinned") / "provenance.json")
    base_record = pinned["inputs"][0]
    assert (base_record["id"], base_record["revision"]) == ("alice/tiny-merge-base", trained_on)


# --- the command line -----------------------------------------------------------------------


def _cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    return run_cli(list(args), capsys)


def _error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_cli_errors_are_one_line_and_write_nothing(base, merged, monkeypatch, capsys, tmp_path):
    adapter, _ = merged
    out = tmp_path / "out"

    missing = tmp_path / "missing-shard"
    shutil.copytree(base, missing)
    shard = sorted(missing.glob("model-*.safetensors"))[2]
    shard.unlink()
    code, _, err = _cli(
        monkeypatch, capsys, "merge", "adapter", str(adapter), "--base", str(missing), "--out", str(out)
    )
    assert code == 1
    assert (
        _error_line(err)
        == f"Error: {missing}: shard {shard.name} listed in model.safetensors.index.json is missing"
    )

    corrupt = tmp_path / "corrupt"
    shutil.copytree(base, corrupt)
    shard = sorted(corrupt.glob("model-*.safetensors"))[1]
    shard.write_bytes(shard.read_bytes()[:-64])
    code, _, err = _cli(monkeypatch, capsys, "merge", "models", str(base), str(corrupt), "--out", str(out))
    assert code == 1
    assert _error_line(err).startswith(f"Error: {shard}: not a readable safetensors file (")

    code, _, err = _cli(
        monkeypatch, capsys, "merge", "models", str(base), str(corrupt), "--weights", "1", "--out", str(out)
    )
    assert code == 1 and _error_line(err) == "Error: --weights: 1 weight(s) for 2 model(s)"

    unrelated = tmp_path / "unrelated"
    unrelated.mkdir()
    code, _, err = _cli(monkeypatch, capsys, "merge", "adapter", str(adapter), "--out", str(unrelated))
    assert code == 1 and "exists and is not a merged model" in _error_line(err)
    _nothing_written(out)

    code, _, err = _cli(monkeypatch, capsys, "verify", "merge", str(tmp_path / "nope"))
    assert code == 1 and _error_line(err) == f"Error: {tmp_path / 'nope'}: artifact folder not found"


def test_cli_merge_models_weights_and_allow_unverified(
    tiny_llama, other_model, monkeypatch, capsys, tmp_path
):
    out = tmp_path / "out"
    args = [
        "merge",
        "models",
        str(tiny_llama),
        str(other_model),
        "--weights",
        "0.6",
        "0.4",
        "--out",
        str(out),
    ]
    code, _, err = _cli(monkeypatch, capsys, *args)
    assert code == 1 and f"pass --allow-unverified {tiny_llama}" in _error_line(err)
    code, stdout, _ = _cli(monkeypatch, capsys, *args, "--allow-unverified", str(tiny_llama))
    assert code == 0, stdout
    assert f"{tiny_llama.name}: allowed-unverified" in stdout
    assert [r["weight"] for r in read_json(out / "provenance.json")["inputs"]] == [0.6, 0.4]

    # --recipe: its registry entries join the gate, and its hub section makes the card possible.
    recipe = tmp_path / "stable.yaml"
    header = "name: stable\nmodel: {name_or_path: x}\nhub: {merged_repo: alice/stable-tiny, license: mit}\n"
    recipe.write_text(header + f"merge: {{taint_registry: [{{id: {other_model}, reason: planted}}]}}\n")
    unverified = ["--allow-unverified", str(tiny_llama), "--recipe", str(recipe)]
    code, _, err = _cli(monkeypatch, capsys, *args[:-1], str(tmp_path / "refused"), *unverified)
    assert code == 1 and f"{other_model} is in the taint registry (planted)" in _error_line(err)
    recipe.write_text(header)
    code, stdout, _ = _cli(monkeypatch, capsys, *args[:-1], str(tmp_path / "carded"), *unverified)
    assert code == 0, stdout
    assert _cli(monkeypatch, capsys, "verify", "merge", str(tmp_path / "carded"))[0] == 0
    code, stdout, err = _cli(monkeypatch, capsys, "card", "merged", str(tmp_path / "carded"))
    assert code == 0, err
    assert "alice/stable-tiny" in (tmp_path / "carded" / "README.md").read_text()


def test_cli_merge_adapter_in_a_subprocess_then_verify(merged, monkeypatch, capsys, tmp_path):
    adapter, _ = merged
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "hubkit", "merge", "adapter", str(adapter), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert f"Next: hubkit verify merge {out}" in done.stdout
    code, stdout, _ = _cli(monkeypatch, capsys, "verify", "merge", str(out))
    assert code == 0 and stdout.startswith(f"Verified {out}: max |logit diff|")
    assert json.loads((out / "verification.json").read_text())["passed"] is True
