"""Peak memory and time of hubkit's streaming merges against peft's and mergekit's.

Builds a seeded Llama-shaped fp32 model (about 0.9 GB, saved in 100 MB shards), a LoRA
adapter on all its projections and a second model of the same shape (another seed), then
runs each merge in a fresh subprocess so peak RSS (ru_maxrss of that process alone) is
measured fairly:

- hubkit: ``merge_adapter`` (one tensor at a time, deltas in fp32);
- peft: ``from_pretrained`` + ``PeftModel.from_pretrained`` + ``merge_and_unload`` +
  ``save_pretrained`` (same shard size);
- model merges of base and the second model, 0.5/0.5: hubkit's streaming ``linear``
  (``merge_models``), and mergekit's ``linear`` and ``ties`` (density 0.5), both through
  hubkit's ``merge_config`` (taint gate, then mergekit's ``run_merge`` on CPU);

and finally compares the two adapter merges' logits on fixed token ids, and hubkit's linear
merge with mergekit's tensor by tensor. Targets: hubkit's adapter merge peak RSS <= 0.3x
peft's, max |logit diff| <= 1e-3; the registry keeps hubkit's engine for linear merges only
while its peak RSS is below mergekit's.

    .venv/bin/python tests/benchmarks/bench_merge.py [--dir /tmp] [--layers 12]

Not collected by pytest (not a test_*.py file).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RSS_RATIO_TARGET = 0.3
LOGIT_TARGET = 1e-3
SHARD = "100MB"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def build(work: Path, layers: int) -> None:
    """The base (Llama-2 layout, smaller widths) with a card, and an adapter with provenance."""
    import torch
    import yaml
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from hubkit.artifacts import write_json

    config = LlamaConfig(
        vocab_size=32000,
        hidden_size=1024,
        intermediate_size=2816,
        num_hidden_layers=layers,
        num_attention_heads=16,
        num_key_value_heads=16,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(work / "base", max_shard_size=SHARD)
    card = {"datasets": ["openai/gsm8k"]}
    (work / "base" / "README.md").write_text(f"---\n{yaml.safe_dump(card)}---\n# bench base\n")
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=targets))
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.02)
    peft_model.save_pretrained(work / "adapter")
    provenance = {
        "base_model": {"name_or_path": str(work / "base"), "revision": None, "resolved_revision": None},
        "leak_certificate": {  # complete, as `hubkit data check` writes it: the taint gate checks
            "passed": True,
            "dataset_sha256": "0" * 64,
            "benchmarks": {"gsm8k": {"sha256": "0"}},
            "embedding_model": "sentence-transformers/all-MiniLM-L6-v2",
            "threshold": 0.5,
            "rule": {"method": "multiview", "views": ["item"], "benchmarks": {}},
            "source": {"kind": "artifact", "name": "dataset"},
            "rows_checked": 1,
            "rows_removed": 0,
            "hits": 0,
        },
        "allow_unchecked_data": False,
        "recipe": {"name": "bench"},
        "versions": {},
    }
    write_json(work / "adapter" / "provenance.json", provenance)
    del peft_model, model
    torch.manual_seed(1)
    LlamaForCausalLM(config).save_pretrained(work / "other", max_shard_size=SHARD)
    (work / "other" / "README.md").write_text(f"---\n{yaml.safe_dump(card)}---\n# bench other\n")


def run_hubkit(work: Path) -> dict[str, float]:
    from hubkit.merge import merge_adapter

    start = time.perf_counter()
    merge_adapter(work / "adapter", work / "hubkit")
    return {"merge_s": time.perf_counter() - start, "peak_rss_mb": _peak_mb()}


def run_peft(work: Path) -> dict[str, float]:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(work / "base", dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, work / "adapter").merge_and_unload()
    merged.save_pretrained(work / "peft", max_shard_size=SHARD)
    return {"merge_s": time.perf_counter() - start, "peak_rss_mb": _peak_mb()}


def compare(work: Path) -> dict[str, float]:
    """Max |logit diff| between the two merged models, loaded one after the other."""
    import torch
    from transformers import AutoModelForCausalLM

    ids = ((torch.arange(64) * 97 + 1) % 32000).unsqueeze(0)
    logits = []
    for name in ("hubkit", "peft"):
        model = AutoModelForCausalLM.from_pretrained(work / name, dtype="auto").eval()
        with torch.inference_mode():
            logits.append(model(input_ids=ids).logits.float())
        del model
    return {"max_abs_logit_diff": float((logits[0] - logits[1]).abs().max())}


def run_hubkit_linear(work: Path) -> dict[str, float]:
    from hubkit.merge import merge_models

    start = time.perf_counter()
    merge_models([str(work / "base"), str(work / "other")], work / "hubkit-linear", max_shard_size=SHARD)
    return {"merge_s": time.perf_counter() - start, "peak_rss_mb": _peak_mb()}


def _mergekit(work: Path, method: str) -> dict[str, float]:
    from hubkit.merge import merge_config

    params = {"weight": 0.5} | ({"density": 0.5} if method == "ties" else {})
    config = {
        "merge_method": method,
        "models": [{"model": "other", "parameters": params}]
        + ([{"model": "base", "parameters": params}] if method == "linear" else []),
    } | ({"base_model": "base"} if method == "ties" else {})
    start = time.perf_counter()
    merge_config(config, work / f"mergekit-{method}", base_dir=work, max_shard_size=SHARD)
    return {"merge_s": time.perf_counter() - start, "peak_rss_mb": _peak_mb()}


def compare_linear(work: Path) -> dict[str, float]:
    """Max |tensor diff| between hubkit's and mergekit's linear merges, one tensor at a time."""
    from hubkit.merge.checkpoint import Checkpoint

    ours, theirs = Checkpoint(work / "hubkit-linear"), Checkpoint(work / "mergekit-linear")
    diff = max(float((ours.get(n).float() - theirs.get(n).float()).abs().max()) for n in ours.tensors)
    return {"max_abs_tensor_diff": diff, "same_names": set(ours.tensors) == set(theirs.tensors)}


STEPS = {
    "hubkit": run_hubkit,
    "peft": run_peft,
    "compare": compare,
    "hubkit-linear": run_hubkit_linear,
    "mergekit-linear": lambda work: _mergekit(work, "linear"),
    "mergekit-ties": lambda work: _mergekit(work, "ties"),
    "compare-linear": compare_linear,
}


def _step(name: str, work: Path, *extra: str) -> dict[str, float]:
    """Run one step in a fresh interpreter; its last stdout line is the JSON result."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--step", name, "--dir", str(work), *extra],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"step {name} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    return {**result, "process_s": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=None, help="Scratch folder (default: a temporary one, removed).")
    parser.add_argument("--layers", type=int, default=12, help="Decoder layers (12: about 0.9 GB in fp32).")
    parser.add_argument("--step", choices=["build", *STEPS], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.step == "build":
        build(Path(args.dir), args.layers)
        return
    if args.step:
        print(json.dumps(STEPS[args.step](Path(args.dir))))
        return

    work = Path(tempfile.mkdtemp(prefix="bench-merge-", dir=args.dir))
    try:
        built = _step("build", work, "--layers", str(args.layers))
        shards = sorted((work / "base").glob("*.safetensors"))
        size = sum(p.stat().st_size for p in shards)
        largest = max(p.stat().st_size for p in shards)
        adapter = (work / "adapter" / "adapter_model.safetensors").stat().st_size
        print(f"built in {built['process_s']:.0f}s: fp32 base {size / 1e9:.2f} GB in {len(shards)} shards ")
        print(f"(largest {largest / 1e6:.0f} MB), adapter {adapter / 1e6:.1f} MB\n")
        hubkit = _step("hubkit", work)
        peft = _step("peft", work)
        diff = _step("compare", work)["max_abs_logit_diff"]
        rows = {name: _step(name, work) for name in ("hubkit-linear", "mergekit-linear", "mergekit-ties")}
        linear = _step("compare-linear", work)
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)

    print(f"{'method':<44}{'peak RSS MB':>12}{'merge s':>9}{'process s':>11}")
    for name, r in (
        ("hubkit merge_adapter (streaming)", hubkit),
        ("peft merge_and_unload + save_pretrained", peft),
    ):
        print(f"{name:<44}{r['peak_rss_mb']:>12.0f}{r['merge_s']:>9.1f}{r['process_s']:>11.1f}")
    ratio = hubkit["peak_rss_mb"] / peft["peak_rss_mb"]
    verdict = "ok" if ratio <= RSS_RATIO_TARGET else "MISSED"
    print(f"\npeak RSS hubkit/peft: {ratio:.2f} (target <= {RSS_RATIO_TARGET}): {verdict}")
    print(f"wall time hubkit/peft (merge): {hubkit['merge_s'] / peft['merge_s']:.2f}")
    verdict = "ok" if diff <= LOGIT_TARGET else "MISSED"
    print(f"max |logit diff| hubkit vs peft: {diff:.3g} (target <= {LOGIT_TARGET}): {verdict}")

    print("\nmodel merges of base and other (0.5/0.5)")
    print(f"{'method':<44}{'peak RSS MB':>12}{'merge s':>9}{'process s':>11}")
    for name, label in (
        ("hubkit-linear", "hubkit merge_models linear (streaming)"),
        ("mergekit-linear", "mergekit linear (run_merge, CPU)"),
        ("mergekit-ties", "mergekit ties, density 0.5 (run_merge, CPU)"),
    ):
        r = rows[name]
        print(f"{label:<44}{r['peak_rss_mb']:>12.0f}{r['merge_s']:>9.1f}{r['process_s']:>11.1f}")
    ours, theirs = rows["hubkit-linear"], rows["mergekit-linear"]
    print(f"\npeak RSS hubkit/mergekit (linear): {ours['peak_rss_mb'] / theirs['peak_rss_mb']:.2f}")
    print(f"wall time hubkit/mergekit (linear merge): {ours['merge_s'] / theirs['merge_s']:.2f}")
    print(
        f"max |tensor diff| hubkit vs mergekit linear: {linear['max_abs_tensor_diff']:.3g} "
        f"(same tensor names: {linear['same_names']})"
    )


if __name__ == "__main__":
    main()
