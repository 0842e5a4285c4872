"""Recipes: the bundled files carry the paper's settings; loading, `extends` and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubkit.errors import HubkitError
from hubkit.recipe import load_recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
MLP = ["gate_proj", "up_proj", "down_proj"]


@pytest.mark.parametrize(
    ("name", "lr", "accumulation"), [("platypus2-13b", 4e-4, 16), ("platypus2-70b", 3e-4, 4)]
)
def test_platypus_recipes_have_the_paper_settings(name, lr, accumulation):
    recipe = load_recipe(RECIPES / f"{name}.yaml")
    t = recipe.training
    assert t["learning_rate"] == lr and isinstance(t["learning_rate"], float)
    assert t["per_device_train_batch_size"] == 1 and t["gradient_accumulation_steps"] == accumulation
    assert t["num_train_epochs"] == 1 and t["warmup_steps"] == 100
    assert t["lr_scheduler_type"] == "cosine" and t["weight_decay"] == 0
    assert recipe.data.max_length == 4096 and recipe.data.prompt_template == "alpaca"
    lora = recipe.lora
    assert (lora.r, lora.alpha, lora.dropout, lora.target_modules) == (16, 16, 0.05, MLP)
    variant = load_recipe(RECIPES / f"{name}-qkvo.yaml")
    assert variant.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", *MLP]
    assert variant.training == recipe.training and variant.name == f"{name}-qkvo"


def test_every_recipe_builds_a_valid_sft_config(tmp_path):
    """TRL validates each recipe's training section (use_cpu only so bf16 passes on a CPU box)."""
    from hubkit.train import build_sft_config

    for path in [*sorted(RECIPES.glob("platypus2-*.yaml")), RECIPES / "tiny.yaml"]:
        args = build_sft_config(load_recipe(path, ["training.use_cpu=true"]), tmp_path / path.stem)
        assert args.max_length == load_recipe(path).data.max_length
        assert args.include_num_input_tokens_seen == "non_padding"


def test_every_recipe_can_publish():
    """Each shipped recipe gives what the cards and pushes need (else train-and-push stops first)."""
    from hubkit.pipeline import check_publishable

    for path in [*sorted(RECIPES.glob("platypus2-*.yaml")), RECIPES / "tiny.yaml"]:
        check_publishable(load_recipe(path))


def test_accelerate_configs_load():
    from accelerate.commands.config.config_args import load_config_from_file

    kinds = {
        name: load_config_from_file(str(RECIPES / "accelerate" / f"{name}.yaml"))
        for name in ("ddp", "fsdp", "zero3")
    }
    assert [c.distributed_type.value for c in kinds.values()] == ["MULTI_GPU", "FSDP", "DEEPSPEED"]
    assert kinds["fsdp"].fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"
    assert kinds["zero3"].deepspeed_config["zero_stage"] == 3


def test_tiny_recipe_is_offline():
    recipe = load_recipe(RECIPES / "tiny.yaml")
    assert recipe.model.name_or_path == "hubkit:tiny-llama"
    assert recipe.run_dir() == Path("runs") / "tiny"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_extends_merges_sections_and_replaces_lists(tmp_path):
    write(
        tmp_path / "base.yaml",
        "name: a\nmodel: {name_or_path: x, dtype: bfloat16}\nlora: {r: 8, target_modules: [a, b]}\n",
    )
    child = write(
        tmp_path / "child.yaml",
        "extends: base.yaml\nname: b\nmodel: {name_or_path: y}\nlora: {target_modules: [c]}\n",
    )
    recipe = load_recipe(child, ["lora.r=4"])
    assert (recipe.name, recipe.model.name_or_path, recipe.model.dtype) == ("b", "y", "bfloat16")
    assert (recipe.lora.r, recipe.lora.target_modules) == (4, ["c"])


def test_extends_errors_name_the_file(tmp_path):
    loop = write(tmp_path / "loop.yaml", "extends: loop.yaml\nname: a\n")
    with pytest.raises(HubkitError, match=r"loop\.yaml: extends: loop\.yaml is already in the chain"):
        load_recipe(loop)
    orphan = write(tmp_path / "orphan.yaml", "extends: missing.yaml\nname: a\n")
    with pytest.raises(HubkitError, match=r"missing\.yaml: recipe file not found"):
        load_recipe(orphan)


def test_yaml_1_2_scalars(tmp_path):
    """YAML 1.1 reads `4e-4` as a string and `no` as False; recipes read what everyone means."""
    text = (
        "name: a\nmodel: {name_or_path: x}\ntraining: {learning_rate: 4e-4, save_strategy: no, bf16: true}\n"
    )
    training = load_recipe(write(tmp_path / "r.yaml", text), ["training.weight_decay=1e-2"]).training
    assert training == {"learning_rate": 4e-4, "save_strategy": "no", "bf16": True, "weight_decay": 0.01}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: a\nmodel: {name_or_path: x}\nlroa: {r: 8}\n", "r.yaml: unknown key 'lroa'"),
        ("name: a\nmodel: {name_or_path: x, revison: main}\n", "r.yaml: unknown key 'model.revison'"),
        (
            "name: a\nmodel: {name_or_path: x}\nlora: {r: sixteen}\n",
            "r.yaml: lora.r: Input should be a valid integer",
        ),
        ("name: a\nlora: {r: 8}\n", "r.yaml: missing required key 'model'"),
    ],
)
def test_recipe_errors_name_key_and_file(tmp_path, text, message):
    with pytest.raises(HubkitError, match=message):
        load_recipe(write(tmp_path / "r.yaml", text))


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        (
            "[{name: alpaca, path: a.jsonl}, {name: x, path: x.jsonl}, {name: alpaca, hub_id: a/b}]",
            "r.yaml: data.sources: duplicate name 'alpaca'",
        ),
        (
            "[{name: a, path: a.jsonl}, {name: ' ', path: b.jsonl}]",
            "r.yaml: data.sources.1: name must not be empty",
        ),
    ],
)
def test_source_names_are_unique_and_not_empty(tmp_path, sources, message):
    """Rows are tagged and counted per source name; a shared name would merge two sources."""
    text = f"name: a\nmodel: {{name_or_path: x}}\ndata: {{sources: {sources}}}\n"
    with pytest.raises(HubkitError) as info:
        load_recipe(write(tmp_path / "r.yaml", text))
    assert str(info.value).endswith(message) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("training.run_name=@exp1", "training.run_name"),
        ("lora.target_modules=[q_proj", "lora.target_modules"),
    ],
)
def test_set_value_that_is_not_yaml_is_one_line(tmp_path, override, key):
    recipe = write(tmp_path / "r.yaml", "name: a\nmodel: {name_or_path: x}\n")
    with pytest.raises(HubkitError) as info:
        load_recipe(recipe, [override])
    message = str(info.value)
    assert message.startswith(f"--set {key}: value is not valid YAML (") and "\n" not in message


@pytest.mark.parametrize("name", ["platypus2-13b", "platypus2-70b"])
def test_platypus_recipes_name_their_base_for_the_taint_gate(name, tmp_path):
    """Llama 2's card lists no training data, so without the recipe's named override the merge
    stage would refuse the base after hours of training."""
    from hubkit.merge.taint import ModelInput, load_registry, run_gate

    recipe = load_recipe(RECIPES / f"{name}.yaml")
    base = recipe.model.name_or_path
    card = "---\nlanguage: [en]\ntags: [facebook, meta, llama-2]\n---\n# Llama 2\n"
    (tmp_path / "README.md").write_text(card)
    inputs = [ModelInput(base, "base", tmp_path, "main")]
    with pytest.raises(HubkitError, match="unknown provenance"):
        run_gate(inputs, load_registry())
    record = run_gate(inputs, load_registry(), recipe.merge.allow_unverified)["inputs"][0]
    assert record["override"] and record["id"] == base


def test_set_steps_into_lists(tmp_path):
    recipe = write(
        tmp_path / "r.yaml",
        "name: a\nmodel: {name_or_path: x}\ndata:\n  sources:\n    - {name: s, path: a.jsonl}\n",
    )
    assert load_recipe(recipe, ["data.sources.0.path=b.jsonl"]).data.sources[0].path == "b.jsonl"
    for override, message in [
        ("data.sources.1.path=c.jsonl", "'1' is not an index of a 1-item list"),
        ("data.sources.first.path=c.jsonl", "'first' is not an index of a 1-item list"),
        ("name.x=1", "'name' is not a section"),
    ]:
        with pytest.raises(HubkitError) as info:
            load_recipe(recipe, [override])
        assert str(info.value) == f"{recipe}: --set {override.partition('=')[0]}: {message}"
