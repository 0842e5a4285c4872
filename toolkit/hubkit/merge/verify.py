"""The equivalence check: a merged model must behave as what it was merged from.

For an adapter merge that is exact up to rounding: the merged model's logits on fixed probe
prompts must match base + adapter run through peft (unmerged), tensor names, shapes and
dtypes must match the base, and every tensor the adapter does not touch must be
bit-identical to the base's. The adapter's own effect on the probes (base + adapter vs the
base) is recorded beside the tolerance: where it is no larger, the logits cannot show whether
the adapter made it into the merge, and the record says so. A model merge has no such
reference, so it is checked for structure against its reference input and for finite logits.
The result is written to ``verification.json`` and into the manifest; publishing calls
``require_verified``.
"""

from __future__ import annotations

import gc
import os
from collections import Counter
from pathlib import Path
from typing import Any

from ..artifacts import (
    CARD_FILES,
    MANIFEST,
    digest_of,
    hash_files,
    read_json,
    read_manifest,
    write_json,
    write_manifest,
)
from ..errors import HubkitError
from ..portable import recall_location
from ..prompts import format_prompt
from .checkpoint import Checkpoint, resolve_model
from .merging import KIND
from .taint import PROVENANCE

VERIFICATION = "verification.json"
PROBES = (
    format_prompt({"instruction": "What is 12 times 7? Explain your steps.", "input": ""}),
    format_prompt(
        {"instruction": "Summarize the text.", "input": "The platypus is a mammal that lays eggs."}
    ),
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "def fibonacci(n):\n    ",
)
# max |logit diff| allowed: atol + rtol * max |reference logit|, by the weights' dtype. fp32
# differs only by summation order; half precision also by rounding the merged weights once.
TOLERANCES = {"F32": (1e-3, 1e-5), "F16": (1e-2, 1e-2), "BF16": (2e-2, 2e-2)}
_MANIFEST_OWN = ("kind", "inputs", "files", "content_hash", "hubkit_version")


def _locate(record: dict[str, Any], merged: Path) -> Path:
    """An input's folder: where it was at merge time (relative to the merged model, or as this
    machine remembers it by hash), else fetched again by id and revision."""
    path = merged / record["path"] if record.get("path") else None
    if path is not None and path.is_dir():
        return path
    if not record.get("revision") and (known := recall_location(record["sha256"])) is not None:
        return known
    return resolve_model(record["id"], record.get("revision"))[0]


def _structure(merged: Checkpoint, reference: Checkpoint) -> list[str]:
    """Differences in tensor names, shapes and dtypes, one line each."""
    problems = [f"missing tensor {n}" for n in sorted(set(reference.tensors) - set(merged.tensors))]
    problems += [f"extra tensor {n}" for n in sorted(set(merged.tensors) - set(reference.tensors))]
    for name in sorted(set(merged.tensors) & set(reference.tensors)):
        got, want = merged.tensors[name], reference.tensors[name]
        if (got.shape, got.dtype) != (want.shape, want.dtype):
            problems.append(f"{name}: {got.dtype}{list(got.shape)}, expected {want.dtype}{list(want.shape)}")
    return problems


def _untouched_differences(merged: Checkpoint, base: Checkpoint, touched: set[str]) -> tuple[int, list[str]]:
    """Compare every untouched tensor byte for byte with the base, one tensor at a time."""
    import torch

    checked, differing = 0, []
    for name in merged.tensors:
        if name in touched or name not in base.tensors:
            continue
        a, b = merged.get(name), base.get(name)
        checked += 1
        if a.shape != b.shape or not torch.equal(
            a.flatten().view(torch.uint8), b.flatten().view(torch.uint8)
        ):
            differing.append(name)
    return checked, differing


def _logits(model, tokenizer) -> list[Any]:
    import torch

    model.eval()
    with torch.inference_mode():
        return [model(**tokenizer(p, return_tensors="pt")).logits.float() for p in PROBES]


def _load(folder: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype="auto")


def verify_merge(merged_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Run the equivalence check on a merged artifact and record it; returns the result.

    The result (``passed`` and the figures behind it) goes to ``verification.json`` and the
    manifest's ``verification`` field, whether it passed or not.
    """
    from transformers import AutoTokenizer

    folder = Path(merged_dir)
    manifest = read_manifest(folder, KIND)
    provenance = read_json(folder / PROVENANCE)
    method = provenance["method"]
    records = provenance["inputs"]
    reference_record = next((r for r in records if r["role"] == "base"), records[0])
    reference = Checkpoint(_locate(reference_record, folder), reference_record["id"])
    merged = Checkpoint(folder)
    dtype = Counter(info.dtype for info in merged.tensors.values()).most_common(1)[0][0]
    problems = _structure(merged, reference)

    tokenizer = AutoTokenizer.from_pretrained(folder)
    got = _logits(_load(folder), tokenizer)
    gc.collect()
    result: dict[str, Any] = {"method": method, "dtype": dtype, "reference": reference_record["id"]}
    if method == "lora":
        result["check"] = (
            "logits on fixed probes equal base + adapter (peft, unmerged); tensor names, shapes and dtypes "
            "equal the base's; tensors the adapter does not touch are bit-identical"
        )
        from peft import PeftModel

        adapter = _locate(next(r for r in records if r["role"] == "adapter"), folder)
        checked, differing = _untouched_differences(merged, reference, set(provenance["touched_tensors"]))
        problems += [f"{name}: untouched by the adapter but differs from the base" for name in differing]
        peft_model = PeftModel.from_pretrained(_load(reference.folder), adapter)
        want = _logits(peft_model, tokenizer)
        with peft_model.disable_adapter():
            plain = _logits(peft_model, tokenizer)
        del peft_model
        gc.collect()
        atol, rtol = TOLERANCES.get(dtype, TOLERANCES["BF16"])
        scale = max(float(w.abs().max()) for w in want)
        diff = max(float((g - w).abs().max()) for g, w in zip(got, want, strict=True))
        effect = max(float((b - w).abs().max()) for b, w in zip(plain, want, strict=True))
        tolerance = atol + rtol * scale
        if not diff <= tolerance:
            problems.append(f"max |logit diff| {diff:.3g} exceeds the {dtype} tolerance {tolerance:.3g}")
        result |= {
            "max_abs_logit_diff": diff,
            "tolerance": tolerance,
            "adapter_effect": effect,
            # no larger than the tolerance: the merge would pass with the adapter lost
            "adapter_effect_visible": effect > tolerance,
            "untouched_tensors_checked": checked,
            "touched_tensors": len(provenance["touched_tensors"]),
        }
    else:
        result["check"] = (
            "tensor names, shapes and dtypes equal the reference input's; finite logits on fixed probes"
        )
        finite = all(bool(g.isfinite().all()) for g in got)
        if not finite:
            problems.append("non-finite logits on the probe prompts")
        result |= {"max_abs_logit_diff": None, "tolerance": None, "logits_finite": finite}
    result |= {
        "passed": not problems,
        "problems": problems,
        "probes": list(PROBES),
        "weights_sha256": digest_of(published_hashes(folder)),
    }
    write_json(folder / VERIFICATION, result)
    summary = {k: result[k] for k in ("passed", "max_abs_logit_diff", "tolerance", "weights_sha256")}
    fields = {k: v for k, v in manifest.items() if k not in _MANIFEST_OWN}
    write_manifest(folder, KIND, manifest["inputs"], **(fields | {"verification": summary}))
    return result


def published_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file of a merged model that is published (weights, index, config, tokenizer,
    code, provenance), all but those written after the check: what a passing check vouches for, so
    nothing can be changed or added after it."""
    return hash_files(folder, exclude=(MANIFEST, *CARD_FILES, VERIFICATION))


def _verdict_problem(result: dict[str, Any]) -> str | None:
    """Why the recorded figures do not make the recorded verdict a pass, or None."""
    if result.get("problems"):
        return f"failed its equivalence check: {result['problems'][0]}"
    if result.get("passed") is not True:
        return "equivalence check did not pass"
    if result.get("method") == "lora":
        diff, tolerance = result.get("max_abs_logit_diff"), result.get("tolerance")
        numbers = isinstance(diff, int | float) and isinstance(tolerance, int | float)
        if not numbers or not diff <= tolerance:
            return f"max |logit diff| {diff} is not within the tolerance {tolerance}, yet it says passed"
    elif result.get("logits_finite") is not True:
        return "logits on the probes are not recorded finite, yet it says passed"
    return None


def require_verified(merged_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Refuse a merged model whose equivalence check is missing, failed, or older than its files.

    The verdict is recomputed from the figures in ``verification.json`` (the manifest's summary
    must agree with them), and its hash must cover every file that would be published.
    """
    folder = Path(merged_dir)
    summary = read_manifest(folder, KIND).get("verification")
    if not summary:
        raise HubkitError(f"{folder}: merged model not verified; run `hubkit verify merge {folder}` first")
    path = folder / VERIFICATION
    if not path.is_file():
        raise HubkitError(f"{path}: missing; run `hubkit verify merge {folder}` again")
    result = read_json(path)
    if any(result.get(k) != v for k, v in summary.items()):
        raise HubkitError(f"{folder / MANIFEST}: verification summary differs from {VERIFICATION}")
    if problem := _verdict_problem(result):
        raise HubkitError(f"{folder}: merged model {problem} (see {VERIFICATION})")
    if digest_of(published_hashes(folder)) != summary.get("weights_sha256"):
        raise HubkitError(f"{folder}: files changed or added since `hubkit verify merge`; run it again")
    return summary


def require_verified_if_merged(folder: str | os.PathLike[str]) -> None:
    """``require_verified`` when ``folder`` is a hubkit merged model; any other folder (a dataset,
    an adapter, a model made elsewhere) has no equivalence check to pass."""
    manifest = Path(folder) / MANIFEST
    if manifest.is_file() and read_json(manifest).get("kind") == KIND:
        require_verified(folder)
