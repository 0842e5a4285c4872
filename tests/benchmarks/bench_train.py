"""Training throughput: the hubkit recipe vs a loop in the style of Platypus' finetune.py.

Both train the same tiny Llama (seeded, LoRA r=16 on gate/up/down) on the same rows for one
epoch, with the same learning rate, schedule and about the same examples per optimizer step,
in the same process:

- **platypus**: Platypus/alpaca-lora's ``finetune.py`` loop: each row tokenized alone (prompt
  tokens masked to -100, EOS appended), ``transformers.Trainer`` with ``DataCollatorForSeq2Seq``
  (per-batch padding to a multiple of 8), no packing, at each ``--micro-batch`` (the paper
  trained at micro batch 1, alpaca-lora's default is 4);
- **platypus, as run**: the same at micro batch 1, loaded as the real script loaded it: the
  base in 8 bit (bitsandbytes ``load_in_8bit``; its CPU backend off a GPU), then
  ``prepare_model_for_int8_training`` (now peft's ``prepare_model_for_kbit_training``), which
  turns on reentrant gradient checkpointing. The rest of the model keeps the recipe's dtype
  (finetune.py's fp16 is slow or missing on CPU);
- **hubkit**: ``hubkit.train.build_trainer`` on ``recipes/tiny.yaml``: TRL prompt-completion
  rows, best-fit packing into ``data.max_length`` rows, padding-free batches through
  ``sdpa_varlen`` (one causal attention per packed example, ``hubkit.attention``);
- **hubkit, dense sdpa mask**: the same with ``model.attn_implementation=sdpa``, which is what
  TRL's padding-free batches get from transformers without FlashAttention: a block-diagonal
  mask over the whole flattened batch, so attention costs the square of the batch's tokens.

Reported: non-pad tokens/s (tokens that are not padding, over the trainer's train_runtime),
train loss at the last step, and the held-out loss (mean response-token NLL on rows neither
saw, computed the same way for all), so "faster" is checked at equal or lower loss.

    .venv/bin/pip install -e '.[bench]'   # bitsandbytes, for the 8-bit "as run" loop
    .venv/bin/python tests/benchmarks/bench_train.py [--rows 240] [--batch 16] [--spread 3 --max-length 1024]

On a GPU, ``--shape 1b --threads 16``: the same on a seeded ~1.2B-parameter Llama (hidden 2048,
22 layers, Llama-2's head size 128), in bf16 for both loops; with FlashAttention installed, add
``--set model.attn_implementation=flash_attention_2``.

Not collected by pytest (not a test_*.py file).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
from importlib.resources import files
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "toolkit"))

from hubkit.prompts import format_prompt  # noqa: E402
from hubkit.recipe import load_recipe  # noqa: E402
from hubkit.tiny import build_tiny_llama, sample_corpus  # noqa: E402
from hubkit.train import (  # noqa: E402
    DatasetArtifact,
    build_sft_config,
    build_trainer,
    lora_config,
    resolve_base_model,
)

RECIPE = ROOT / "recipes" / "tiny.yaml"
# hubkit.tiny.build_tiny_llama sizes; "tiny" is the recipe's own hubkit:tiny-llama
SHAPES: dict[str, dict[str, int]] = {
    "tiny": {},
    "1b": {"hidden_size": 2048, "intermediate_size": 5632, "num_layers": 22, "num_heads": 16},
}


def sample_rows() -> list[dict[str, str]]:
    lines = files("hubkit").joinpath("sample_data/gsm8k_train_sample.jsonl").read_text().splitlines()
    return [
        {"instruction": r["question"], "input": "", "output": r["answer"]} for r in map(json.loads, lines)
    ]


def platypus_style(
    base: Path,
    rows: list[dict],
    recipe: Any,
    micro: int,
    accumulation: int,
    out: Path,
    as_run: bool = False,
):
    """finetune.py's data path and Trainer set-up, with the recipe's optimizer settings."""
    import torch
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainingArguments,
    )

    t = recipe.training
    tokenizer = AutoTokenizer.from_pretrained(base)
    cutoff = recipe.data.max_length

    def tokenize(prompt: str, add_eos: bool = True) -> dict[str, list[int]]:
        result = tokenizer(prompt, truncation=True, max_length=cutoff, padding=False)
        if (
            add_eos
            and result["input_ids"][-1] != tokenizer.eos_token_id
            and len(result["input_ids"]) < cutoff
        ):
            result["input_ids"].append(tokenizer.eos_token_id)
            result["attention_mask"].append(1)
        result["labels"] = result["input_ids"].copy()
        return dict(result)

    def generate_and_tokenize_prompt(row: dict) -> dict[str, list[int]]:
        full = tokenize(format_prompt(row) + row["output"])
        user_len = len(tokenize(format_prompt(row), add_eos=False)["input_ids"])
        full["labels"] = [-100] * user_len + full["labels"][user_len:]
        return full

    data = Dataset.from_list(rows).map(
        generate_and_tokenize_prompt, remove_columns=["instruction", "input", "output"]
    )
    torch.manual_seed(0)
    if as_run:  # finetune.py: load_in_8bit=True, then prepare_model_for_int8_training
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        model = AutoModelForCausalLM.from_pretrained(
            base,
            dtype=recipe.model.dtype,
            quantization_config=BitsAndBytesConfig(load_in_8bit=True),
            device_map="cpu" if t.get("use_cpu") or not torch.cuda.is_available() else 0,
        )
        model = prepare_model_for_kbit_training(
            model, gradient_checkpointing_kwargs={"use_reentrant": True}
        )
    else:
        model = AutoModelForCausalLM.from_pretrained(base, dtype=recipe.model.dtype)
    model = get_peft_model(model, lora_config(recipe.lora))
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=accumulation,
        num_train_epochs=1,
        learning_rate=t["learning_rate"],
        lr_scheduler_type=t["lr_scheduler_type"],
        warmup_steps=t["warmup_steps"],
        weight_decay=t["weight_decay"],
        logging_steps=1,
        save_strategy="no",
        bf16=bool(t.get("bf16")),
        use_cpu=bool(t.get("use_cpu")),
        report_to="none",
        disable_tqdm=True,
        seed=0,
        include_num_input_tokens_seen="non_padding",
    )
    collator = DataCollatorForSeq2Seq(tokenizer, pad_to_multiple_of=8, return_tensors="pt", padding=True)
    return Trainer(model=model, args=args, train_dataset=data, data_collator=collator), tokenizer


def heldout_loss(model: Any, tokenizer: Any, rows: list[dict]) -> float:
    """Mean NLL per response token (EOS included) over ``rows``, one row at a time, no padding."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            prompt = tokenizer(format_prompt(row))["input_ids"]
            ids = tokenizer(format_prompt(row) + row["output"])["input_ids"] + [tokenizer.eos_token_id]
            labels = [-100] * len(prompt) + ids[len(prompt) :]
            n = sum(1 for x in labels[1:] if x != -100)
            tensors = {"input_ids": [ids], "labels": [labels]}
            loss = model(**{k: torch.tensor(v, device=model.device) for k, v in tensors.items()}).loss
            total, count = total + loss.item() * n, count + n
    return total / count


def run(trainer: Any, tokenizer: Any, heldout: list[dict]) -> dict[str, Any]:
    result = trainer.train()
    runtime = result.metrics["train_runtime"]
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {
        "optimizer_steps": trainer.state.global_step,
        "non_pad_tokens": trainer.state.num_input_tokens_seen,
        "train_runtime_s": round(runtime, 2),
        "non_pad_tokens_per_s": round(trainer.state.num_input_tokens_seen / runtime),
        "final_train_loss": round(losses[-1], 4),
        "heldout_loss": round(heldout_loss(trainer.model, tokenizer, heldout), 4),
    }


def spread_lengths(rows: list[dict], every: int) -> list[dict]:
    """Every ``every``-th row gets two solved problems as its input: lengths then spread 1x-3x,
    as in Open-Platypus, where per-batch padding wastes the most."""
    out = []
    for i, row in enumerate(rows):
        if every and i % every == 0:
            extra = rows[(i + 1) % len(rows)], rows[(i + 2) % len(rows)]
            row = {**row, "input": "\n\n".join(f"{r['instruction']}\n{r['output']}" for r in extra)}
        out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=240, help="training rows (one epoch)")
    parser.add_argument("--heldout", type=int, default=60, help="held-out rows for the loss")
    parser.add_argument("--batch", type=int, default=16, help="examples per optimizer step (the paper: 16)")
    parser.add_argument(
        "--micro-batch",
        type=int,
        nargs="+",
        default=[1, 4],
        help="platypus loop micro batches (the paper's: 1; alpaca-lora's: 4)",
    )
    parser.add_argument(
        "--max-length", type=int, default=None, help="cutoff for both (default: the recipe's)"
    )
    parser.add_argument("--spread", type=int, default=0, help="lengthen every Nth row (0: rows as they are)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each; medians reported")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared box)")
    parser.add_argument(
        "--shape", choices=SHAPES, default="tiny", help="model size (1b: for a GPU; bf16 for both loops)"
    )
    parser.add_argument("--layers", type=int, default=None, help="fewer layers of that shape (a quick try)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra recipe override, e.g. model.attn_implementation=flash_attention_2",
    )
    args = parser.parse_args()
    if importlib.util.find_spec("bitsandbytes") is None:
        raise SystemExit("bench_train.py: 'platypus as run' needs bitsandbytes: pip install -e '.[bench]'")

    import torch

    torch.set_num_threads(args.threads)
    rows = spread_lengths(sample_rows(), args.spread)
    train_rows, heldout = rows[: args.rows], rows[args.rows : args.rows + args.heldout]
    overrides = ["training.max_steps=-1", "training.num_train_epochs=1", "training.save_strategy=no"]
    overrides += ["training.logging_steps=1"]
    overrides += [f"data.max_length={args.max_length}"] if args.max_length else []
    overrides += args.overrides
    recipe = load_recipe(RECIPE, overrides)
    variants = {
        "hubkit": ("hubkit (packing, sdpa_varlen)", []),
        "hubkit-dense": ("hubkit, dense sdpa mask", ["model.attn_implementation=sdpa"]),
        **{f"platypus-{m}": (f"platypus style, micro {m}", (m, False)) for m in args.micro_batch},
        "platypus-as-run": ("platypus as run (8-bit, ckpt)", (1, True)),
    }
    results: dict[str, list[dict]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.chdir(tmp)  # hubkit:tiny-llama is built under runs/tiny/base-model
        if args.shape != "tiny":
            shape = {**SHAPES[args.shape], **({"num_layers": args.layers} if args.layers else {})}
            folder = build_tiny_llama(tmp / f"base-{args.shape}", sample_corpus(), **shape)
            overrides += [f"model.name_or_path={folder}", "model.dtype=bfloat16", "training.bf16=true"]
            recipe = load_recipe(RECIPE, overrides)
        base = resolve_base_model(recipe)
        # about `batch` examples per optimizer step for all: packed rows hold several examples
        per_row = max(1.0, recipe.data.max_length / _mean_length(base.load_from, train_rows))
        accumulation = max(1, round(args.batch / (recipe.training["per_device_train_batch_size"] * per_row)))
        overrides.append(f"training.gradient_accumulation_steps={accumulation}")
        data = DatasetArtifact(tmp, train_rows, "-", None, None)
        for i in range(args.repeats):
            for name, (_, setting) in variants.items():
                if name.startswith("hubkit"):
                    variant = load_recipe(RECIPE, [*overrides, *setting])
                    args_i = build_sft_config(variant, tmp / f"{name}-{i}")
                    trainer = build_trainer(variant, base, data, args_i)
                    tokenizer = trainer.processing_class
                else:
                    micro, as_run = setting
                    trainer, tokenizer = platypus_style(
                        Path(base.load_from),
                        train_rows,
                        recipe,
                        micro,
                        max(1, args.batch // micro),
                        tmp / name,
                        as_run,
                    )
                results[name].append(run(trainer, tokenizer, heldout))

    summary = {
        name: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for name, runs in results.items()
    }
    print(json.dumps({"args": vars(args), "runs": results, "median": summary}, indent=2))
    hub = summary["hubkit"]
    print(
        f"\n{'median of ' + str(args.repeats):30} {'steps':>5} {'tokens/s':>9} {'hubkit is':>9} "
        f"{'train loss':>10} {'held-out':>9}"
    )
    for name, (label, _) in variants.items():
        r = summary[name]
        print(
            f"{label:30} {r['optimizer_steps']:>5} {r['non_pad_tokens_per_s']:>9} "
            f"{hub['non_pad_tokens_per_s'] / r['non_pad_tokens_per_s']:>8.2f}x "
            f"{r['final_train_loss']:>10} {r['heldout_loss']:>9}"
        )
    for name in (n for n in variants if n.startswith("platypus")):
        plat = summary[name]
        ratio = hub["non_pad_tokens_per_s"] / plat["non_pad_tokens_per_s"]
        print(
            f"vs {variants[name][0]}: {ratio:.2f}x tokens/s (target >= 2x); "
            f"held-out loss {hub['heldout_loss'] - plat['heldout_loss']:+.4f} (target <= 0)"
        )


def _mean_length(base: str, rows: list[dict]) -> float:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    return sum(len(tok(format_prompt(r) + r["output"])["input_ids"]) + 1 for r in rows) / len(rows)


if __name__ == "__main__":
    main()
