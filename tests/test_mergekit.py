"""Model merges on mergekit, behind hubkit's gates, on tiny Llamas in >= 4 shards: a mergekit
configuration runs unchanged, every model it names passes the taint gate first, outputs load in
transformers, and the verification recomputes tensors with each method's formula, failing when
one tensor is changed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

from hubkit.artifacts import read_json
from hubkit.cards import write_card
from hubkit.errors import HubkitError
from hubkit.merge import merge_config, merge_models, require_verified, verify_merge
from hubkit.merge.checkpoint import Checkpoint
from hubkit.publish import push_folder
from hubkit.recipe import recipe_from_dict

TAINTED = "truthfulqa/truthful_qa"  # in the shipped registry


def _card(folder: Path, **metadata) -> Path:
    metadata = metadata or {"datasets": ["openai/gsm8k"]}
    (folder / "README.md").write_text(f"---\n{yaml.safe_dump(metadata)}---\n# model\n")
    return folder


def _variant(source: Path, out: Path, seed: int, **card) -> Path:
    """``source`` with every weight moved by seeded noise, in the same >= 4 shards, with a card."""
    model = AutoModelForCausalLM.from_pretrained(source)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param += 0.02 * torch.randn(param.shape, generator=generator)
    model.save_pretrained(out, max_shard_size="100KB")
    for file in source.glob("tokenizer*"):
        shutil.copyfile(file, out / file.name)
    return _card(out, **card)


@pytest.fixture(scope="module")
def models(tiny_llama, tmp_path_factory) -> Path:
    """A folder holding base/, a/ and b/ (variants of base), each with a card listing its data."""
    root = tmp_path_factory.mktemp("mergekit")
    shutil.copytree(tiny_llama, root / "base")
    _card(root / "base")
    _variant(root / "base", root / "a", 1)
    _variant(root / "base", root / "b", 2)
    assert len(list((root / "a").glob("*.safetensors"))) >= 4
    return root


def _config(root: Path, method: str, **extra) -> Path:
    """A mergekit YAML beside the models, naming them by relative path, as mergekit users write it."""
    config: dict = {"merge_method": method, "base_model": "base", "dtype": "float32"}
    if method == "slerp":
        config |= {"models": [{"model": "base"}, {"model": "a"}], "parameters": {"t": 0.3}}
    elif method == "model_stock":
        config["models"] = [{"model": "a"}, {"model": "b"}]
    elif method == "passthrough":  # a frankenmerge: 3 layers stacked from two 2-layer models
        config = {"merge_method": "passthrough", "dtype": "float32", "slices": [
            {"sources": [{"model": "a", "layer_range": [0, 2]}]},
            {"sources": [{"model": "b", "layer_range": [1, 2], "parameters": {"scale": 0.5}}]},
        ]}  # fmt: skip
    elif method == "linear":
        config = {"merge_method": "linear", "models": [
            {"model": "a", "parameters": {"weight": 0.7}}, {"model": "b", "parameters": {"weight": 0.3}}
        ]}  # fmt: skip
    else:
        config["models"] = [
            {"model": "a", "parameters": {"weight": 0.6, "density": 0.5}},
            {"model": "b", "parameters": {"weight": 0.4, "density": 0.7}},
        ]
    path = root / f"{method}.yaml"
    path.write_text(yaml.safe_dump(config | extra))
    return path


def _perturb_one(folder: Path, name: str, by: float = 1e-3) -> None:
    """Add ``by`` to one tensor of a merged model, in place (another tool's edit)."""
    index = (
        read_json(folder / "model.safetensors.index.json")["weight_map"]
        if (folder / "model.safetensors.index.json").is_file()
        else None
    )
    file = folder / (index[name] if index else "model.safetensors")
    tensors = load_file(file)
    tensors[name] = tensors[name] + by
    save_file(tensors, file, metadata={"format": "pt"})


@pytest.mark.parametrize(
    "method",
    [
        "linear",
        "ties",
        "dare_ties",
        "dare_linear",
        "slerp",
        "breadcrumbs",
        "breadcrumbs_ties",
        "della",
        "della_linear",
        "model_stock",
        "passthrough",
    ],
)
def test_config_merge_loads_verifies_and_fails_when_a_tensor_changes(models, tmp_path, method):
    out = merge_config(_config(models, method), tmp_path / method)
    assert not (out / "README.md").exists()  # mergekit's card (local paths) is not written
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.model_type == "llama"
    assert model.config.num_hidden_layers == (3 if method == "passthrough" else 2)
    provenance = read_json(out / "provenance.json")
    assert provenance["engine"] == "mergekit" and provenance["method"] == method
    assert provenance["seed"] == (0 if method.startswith(("dare", "della")) else None)

    result = verify_merge(out)
    assert result["passed"], result["problems"]
    assert (
        len(result["recomputed_tensors"]) == len(model.state_dict())
        and result["recompute_max_abs_diff"] < 1e-5
    )
    assert require_verified(out)

    name = "model.layers.1.mlp.down_proj.weight"
    _perturb_one(out, name)
    result = verify_merge(out)
    assert not result["passed"]
    assert [p for p in result["problems"] if p.startswith(f"{name}: differs from its {method} recomputation")]
    with pytest.raises(HubkitError, match="failed its equivalence check"):
        require_verified(out)


def test_flags_run_the_same_merge_as_a_config(models, tmp_path):
    by_flags = merge_models(
        [str(models / "a"), str(models / "b")],
        tmp_path / "flags",
        method="ties",
        base=str(models / "base"),
        weights=[0.6, 0.4],
        densities=[0.5, 0.7],
    )
    by_config = merge_config(_config(models, "ties", dtype=None), tmp_path / "config")
    flags = load_file(by_flags / "model.safetensors")
    assert all(torch.equal(flags[k], v) for k, v in load_file(by_config / "model.safetensors").items())
    assert verify_merge(by_flags)["passed"]
    with pytest.raises(HubkitError, match="--density: not a parameter of --method slerp"):
        merge_models(
            [str(models / "a")], tmp_path / "x", method="slerp", base=str(models / "base"), densities=[1]
        )
    with pytest.raises(HubkitError, match="--seed: --method ties draws no random masks"):
        merge_models([str(models / "a")], tmp_path / "x", method="ties", base=str(models / "base"), seed=1)


def test_dare_seed_is_recorded_and_changes_the_masks(models, tmp_path):
    config = _config(models, "dare_ties")
    one = merge_config(config, tmp_path / "one", seed=1)
    two = merge_config(config, tmp_path / "two", seed=2)
    assert read_json(one / "provenance.json")["seed"] == 1
    name = "model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(
        load_file(one / "model.safetensors")[name], load_file(two / "model.safetensors")[name]
    )
    assert verify_merge(one)["passed"] and verify_merge(two)["passed"]


def test_published_config_card_and_push_name_inputs_never_paths(local_hub, models, tmp_path):
    from huggingface_hub import HfApi, ModelCard

    api = HfApi()
    api.create_repo("alice/mergekit-partner", exist_ok=True)
    api.upload_folder(repo_id="alice/mergekit-partner", folder_path=models / "b")
    commit = api.repo_info("alice/mergekit-partner").sha
    config = yaml.safe_load(_config(models, "dare_ties").read_text())
    config["models"][1]["model"] = "alice/mergekit-partner"
    recipe = recipe_from_dict(
        {
            "name": "stable",
            "model": {"name_or_path": "x"},
            "hub": {"merged_repo": "alice/stable", "license": "mit"},
        }
    )
    out = merge_config(config, tmp_path / "out", base_dir=models, recipe=recipe.to_dict())
    text = (out / "mergekit_config.yml").read_text()
    published = yaml.safe_load(text)
    assert published["base_model"] == "base"
    assert [m["model"] for m in published["models"]] == ["a", f"alice/mergekit-partner@{commit}"]
    for record in read_json(out / "provenance.json")["inputs"]:
        assert f"#   {record['name']}: {record['sha256']}" in text

    with pytest.raises(HubkitError, match="not verified"):
        push_folder(out, "alice/stable")
    assert verify_merge(out)["passed"]
    write_card("merged", out)
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == "alice/mergekit-partner"  # local folders are not Hub metadata
    assert "## Merge configuration" in card.text and f"alice/mergekit-partner@{commit}" in card.text
    assert "seeded per tensor from seed 0" in card.text
    push_folder(out, "alice/stable")
    remote = set(api.list_repo_files("alice/stable"))
    assert {"README.md", "mergekit_config.yml", "provenance.json", "verification.json"} <= remote
    for name in ("README.md", "mergekit_config.yml"):
        assert str(models) not in (out / name).read_text() and str(tmp_path) not in (out / name).read_text()


def test_a_tainted_model_anywhere_in_a_config_is_refused_with_nothing_written(models, tmp_path):
    _variant(models / "base", tmp_path / "tainted", 3, datasets=[TAINTED])
    shutil.copytree(models / "base", tmp_path / "base")
    config = {
        "merge_method": "slerp",
        "base_model": "base",
        "slices": [
            {
                "sources": [
                    {"model": "base", "layer_range": [0, 2]},
                    {"model": "tainted", "layer_range": [0, 2]},
                ]
            }
        ],
        "parameters": {"t": 0.5},
    }
    out = tmp_path / "out"
    with pytest.raises(
        HubkitError, match=f"tainted: refused by the taint gate: its training dataset {TAINTED}"
    ):
        merge_config(config, out, base_dir=tmp_path)
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_unverified_needs_an_override_which_is_recorded(tiny_llama, models, tmp_path):
    config = {
        "merge_method": "ties",
        "base_model": str(tiny_llama),  # no card: unknown provenance
        "models": [{"model": str(models / "a"), "parameters": {"weight": 1.0, "density": 0.5}}],
    }
    with pytest.raises(HubkitError, match=f"pass --allow-unverified {tiny_llama}"):
        merge_config(config, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    out = merge_config(config, tmp_path / "out", allow_unverified=[str(tiny_llama)])
    gate = read_json(out / "provenance.json")["taint_gate"]
    assert [r["override"] for r in gate["inputs"]] == [True, False]
    assert "/" not in yaml.safe_load((out / "mergekit_config.yml").read_text())["base_model"]


def _fails_when_perturbed(out: Path, name: str, by: float = 1e-3) -> None:
    _perturb_one(out, name, by)
    result = verify_merge(out)
    assert not result["passed"] and result["problems"][0].startswith(f"{name}: differs from its")


def test_configured_dtypes_and_a_linear_base_are_recomputed(models, tmp_path):
    """Inputs are cast to the config's dtype and the output to its out_dtype; the check
    expects and recomputes in those. A linear config listing its base_model merges it as an input."""
    name = "model.layers.0.self_attn.q_proj.weight"
    config = yaml.safe_load(_config(models, "ties").read_text()) | {"dtype": "bfloat16"}
    out = merge_config(config, tmp_path / "bf16", base_dir=models)
    result = verify_merge(out)
    assert result["passed"], result["problems"]
    assert result["dtype"] == "BF16" and len(result["recomputed_tensors"]) == 21
    _fails_when_perturbed(out, name, by=0.1)  # beyond bf16's rounding

    config = yaml.safe_load(_config(models, "linear").read_text())
    config |= {"base_model": "base", "dtype": "float32", "out_dtype": "float16"}
    config["models"].append({"model": "base", "parameters": {"weight": 0.5}})
    out = merge_config(config, tmp_path / "linear", base_dir=models)
    result = verify_merge(out)
    assert result["passed"], result["problems"]
    assert result["dtype"] == "F16" and result["recompute_max_abs_diff"] < 1e-3
    _fails_when_perturbed(out, name, by=0.05)


def test_gradients_and_filters_are_resolved_per_tensor(models, tmp_path):
    """mergekit's own SLERP example (t by filter, a gradient over the layers) and a TIES model
    whose weight is a gradient and density a filter: every tensor recomputed with its value."""
    gradient = [0, 0.5, 0.3, 0.7, 1]
    t = [
        {"filter": "self_attn", "value": gradient},
        {"filter": "mlp", "value": gradient[::-1]},
        {"value": 0.5},
    ]
    slerp = yaml.safe_load(_config(models, "slerp").read_text()) | {"parameters": {"t": t}}
    ties = yaml.safe_load(_config(models, "ties").read_text())
    ties["models"][0]["parameters"] = {
        "weight": [0.2, 0.9],
        "density": [{"filter": "mlp", "value": 0.3}, {"value": [0.9, 0.5]}],
    }
    for config in (slerp, ties):
        out = merge_config(config, tmp_path / config["merge_method"], base_dir=models)
        result = verify_merge(out)
        assert result["passed"], result["problems"]
        assert len(result["recomputed_tensors"]) == 21 and result["recompute_max_abs_diff"] < 1e-6
    _fails_when_perturbed(out, "model.layers.1.mlp.gate_proj.weight")


def test_a_frankenmerge_of_models_of_other_depths_is_verified_by_its_slice_map(models, tmp_path):
    from hubkit.tiny import build_tiny_llama, sample_corpus

    _card(build_tiny_llama(tmp_path / "deep", sample_corpus(), num_layers=3, max_shard_size="100KB"))
    shutil.copytree(models / "a", tmp_path / "a")
    config = {
        "merge_method": "passthrough",
        "slices": [
            {"sources": [{"model": "a", "layer_range": [0, 2]}]},
            {"sources": [{"model": "deep", "layer_range": [1, 3]}]},
        ],
    }
    out = merge_config(config, tmp_path / "out", base_dir=tmp_path)
    assert AutoModelForCausalLM.from_pretrained(out).config.num_hidden_layers == 4
    result = verify_merge(out)
    assert result["passed"], result["problems"]
    # output layers 0-1 are a's, 2-3 deep's 1-2; the embeddings a's, the final norm deep's
    merged, a, deep = (Checkpoint(f) for f in (out, tmp_path / "a", tmp_path / "deep"))
    for got, want in [
        (merged.get("model.layers.1.mlp.up_proj.weight"), a.get("model.layers.1.mlp.up_proj.weight")),
        (merged.get("model.layers.3.mlp.up_proj.weight"), deep.get("model.layers.2.mlp.up_proj.weight")),
        (merged.get("model.embed_tokens.weight"), a.get("model.embed_tokens.weight")),
        (merged.get("model.norm.weight"), deep.get("model.norm.weight")),
    ]:
        assert torch.equal(got, want)
    _fails_when_perturbed(out, "model.layers.3.mlp.up_proj.weight")
    # a models configuration still needs one depth
    config = {"merge_method": "linear", "models": [{"model": "a"}, {"model": "deep"}]}
    with pytest.raises(HubkitError, match="deep: has extra tensor model.layers.2"):
        merge_config(config, tmp_path / "linear", base_dir=tmp_path)
    with pytest.raises(HubkitError, match="--seed: merge_method passthrough draws no random masks"):
        merge_config(config | {"merge_method": "passthrough"}, tmp_path / "x", base_dir=tmp_path, seed=3)


def test_different_architectures_and_lora_references_are_refused(models, tmp_path):
    gpt2 = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=128)).save_pretrained(gpt2)
    _card(gpt2)
    config = {"merge_method": "ties", "base_model": str(models / "base"), "models": [{"model": str(gpt2)}]}
    with pytest.raises(HubkitError, match=f"{gpt2}: model_type 'gpt2' differs from .*'llama'"):
        merge_config(config, tmp_path / "out")
    config["models"] = [{"model": f"{models / 'a'}+{tmp_path / 'adapter'}"}]
    with pytest.raises(HubkitError, match="a model\\+LoRA reference; fold the adapter first"):
        merge_config(config, tmp_path / "out")
    with pytest.raises(HubkitError, match="merge_method 'frankenstein' is not one hubkit gates"):
        merge_config({"merge_method": "frankenstein", "models": [{"model": "a"}]}, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_runs_a_config(models, monkeypatch, capsys, tmp_path):
    from test_merge import _cli

    def cli(*args: str) -> tuple[int, str, str]:
        return _cli(monkeypatch, capsys, *args)

    out = tmp_path / "out"
    code, stdout, err = cli("merge", "models", "--config", str(_config(models, "ties")), "--out", str(out))
    assert code == 0, err
    assert stdout.startswith(f"Merged (ties) into {out}")
    code, stdout, err = cli("verify", "merge", str(out))
    assert code == 0, err
    code, _, err = cli(
        "merge", "models", str(models / "a"), "--config", "x.yaml", "--out", str(tmp_path / "o")
    )
    assert code == 1 and "give either MODELS and flags or a mergekit configuration" in err


def test_train_and_push_merges_the_fold_with_a_partner_by_a_mergekit_config(local_hub, tmp_path, monkeypatch):
    """A Stable-Platypus2-style release on the tiny recipe: train, fold, TIES with a partner,
    verify, cards, push; the pushed merge loads back with the local logits."""
    from hubkit.pipeline import load_back, train_and_push
    from hubkit.recipe import load_recipe
    from hubkit.tiny import build_tiny_llama, sample_corpus

    _card(build_tiny_llama(tmp_path / "partner", sample_corpus(), seed=7))
    params = {"weight": 0.5, "density": 0.6}
    merge = {
        "merge_method": "ties",
        "base_model": "hubkit:base",
        "models": [
            {"model": "hubkit:fold", "parameters": params},
            {"model": "partner", "parameters": params},
        ],
    }
    hub = {
        "dataset_repo": "alice/st-data",
        "adapter_repo": "alice/st-adapter",
        "merged_repo": "alice/st-merged",
    }
    recipe_file = tmp_path / "stable.yaml"
    tiny = Path(__file__).resolve().parents[1] / "recipes" / "tiny.yaml"
    recipe_file.write_text(
        yaml.safe_dump(
            {
                "extends": str(tiny),
                "name": "stable",
                "hub": hub | {"license": "mit"},
                "merge": {"config": merge},
            }
        )
    )
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(recipe_file, ["training.max_steps=4", "training.save_steps=4"])
    result = train_and_push(recipe, echo=lambda _: None)
    merged = result.artifacts["merged"]
    provenance = read_json(merged / "provenance.json")
    assert (provenance["method"], provenance["engine"]) == ("ties", "mergekit")
    assert [(r["name"], r["role"]) for r in provenance["inputs"]] == [
        ("base-model", "base"),
        ("merged-adapter", "model"),
        ("partner", "model"),
    ]
    verification = read_json(merged / "verification.json")
    assert verification["passed"] and verification["recompute_max_abs_diff"] < 1e-5
    assert "## Merge configuration" in (merged / "README.md").read_text()
    assert load_back(result)["merged_logits_equal"]
    with pytest.raises(
        HubkitError, match="merge.config: merge_method 'frankenmerge' is not one hubkit gates"
    ):
        train_and_push(load_recipe(recipe_file, ["merge.config.merge_method=frankenmerge"]), dry_run=True)
