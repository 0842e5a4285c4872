"""The equivalence check: a merged model must behave as what it was merged from.

For an adapter merge that is exact up to rounding: the merged model's logits on fixed probe
prompts must match base + adapter run through peft (unmerged), tensor names, shapes and
dtypes must match the base, and every tensor the adapter does not touch must be
bit-identical to the base's. The adapter's own effect on the probes (base + adapter vs the
base) is recorded beside the tolerance: where it is no larger, the logits cannot show whether
the adapter made it into the merge, and the record says so. A model merge has no such
reference, so it is checked for structure against what its inputs and configuration make
(``recompute.expected``), for finite logits, and by recomputing sampled tensors by formula.
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
    artifact_kind,
    digest_of,
    hash_files,
    load_manifest,
    write_json,
    write_manifest,
)
from ..errors import NotVerified
from ..methods import MERGE_METHODS
from ..portable import recall_location
from ..prompts import format_prompt
from ..schemas import (
    MANIFEST,
    MergedManifest,
    MergedProvenance,
    MergeInputRecord,
    VerificationRecord,
    VerificationSummary,
)
from ..schemas import MERGED as KIND
from .checkpoint import Checkpoint, resolve_model
from .recompute import expected, plan, recompute

VERIFICATION = VerificationRecord.FILE
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
# What write_manifest computes afresh when the manifest is rewritten with the verification.
_MANIFEST_OWN = {"kind", "inputs", "files", "content_hash", "hubkit_version", "schema_version"}


def _locate(record: MergeInputRecord, merged: Path) -> Path:
    """An input's folder: where it was at merge time (relative to the merged model, or as this
    machine remembers it by hash), else fetched again by id and revision."""
    path = merged / record.path if record.path else None
    if path is not None and path.is_dir():
        return path
    if not record.revision and (known := recall_location(record.sha256)) is not None:
        return known
    return resolve_model(record.id, record.revision)[0]


def _structure(merged: Checkpoint, expected: dict[str, tuple[tuple[int, ...], str]]) -> list[str]:
    """Differences from the expected tensor names, shapes and dtypes, one line each."""
    problems = [f"missing tensor {n}" for n in sorted(set(expected) - set(merged.tensors))]
    problems += [f"extra tensor {n}" for n in sorted(set(merged.tensors) - set(expected))]
    for name in sorted(set(merged.tensors) & set(expected)):
        got, (shape, dtype) = merged.tensors[name], expected[name]
        if (got.shape, got.dtype) != (shape, dtype):
            problems.append(f"{name}: {got.dtype}{list(got.shape)}, expected {dtype}{list(shape)}")
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
    manifest = load_manifest(folder, KIND)
    provenance = MergedProvenance.read(folder)
    method = provenance.method
    records = provenance.inputs
    reference_record = next((r for r in records if r.role == "base"), records[0])
    reference = Checkpoint(_locate(reference_record, folder), reference_record.id)
    merged = Checkpoint(folder)
    dtype = Counter(info.dtype for info in merged.tensors.values()).most_common(1)[0][0]
    if MERGE_METHODS[method].verification == "adapter":
        problems = _structure(merged, {n: (i.shape, i.dtype) for n, i in reference.tensors.items()})
    else:  # a model merge: the tensors its configuration maps its inputs to (slices included)
        merge_plan = plan(provenance, lambda record: _locate(record, folder))
        problems = _structure(merged, expected(merge_plan))

    tokenizer = AutoTokenizer.from_pretrained(folder)
    got = _logits(_load(folder), tokenizer)
    gc.collect()
    result: dict[str, Any] = {"method": method, "dtype": dtype, "reference": reference_record.id}
    if MERGE_METHODS[method].verification == "adapter":
        result["check"] = (
            "logits on fixed probes equal base + adapter (peft, unmerged); tensor names, shapes and dtypes "
            "equal the base's; tensors the adapter does not touch are bit-identical"
        )
        from peft import PeftModel

        adapter = _locate(next(r for r in records if r.role == "adapter"), folder)
        touched = provenance.touched_tensors or []
        checked, differing = _untouched_differences(merged, reference, set(touched))
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
            "touched_tensors": len(touched),
        }
    else:
        result["check"] = (
            "tensor names, shapes and dtypes are those the inputs and configuration make (slices mapped "
            "layer by layer, dtype as configured); finite logits on fixed probes; "
            "sampled tensors equal their recomputation with the method's formula"
        )
        finite = all(bool(g.isfinite().all()) for g in got)
        if not finite:
            problems.append("non-finite logits on the probe prompts")
        figures, differing = recompute(merged, provenance, merge_plan)
        problems += differing
        result |= {"max_abs_logit_diff": None, "tolerance": None, "logits_finite": finite, **figures}
    result |= {
        "passed": not problems,
        "problems": problems,
        "probes": list(PROBES),
        "weights_sha256": digest_of(published_hashes(folder)),
    }
    record = VerificationRecord(**result)
    write_json(folder / VERIFICATION, record.to_json_dict())
    fields = manifest.model_dump(mode="json", include=manifest.model_fields_set - _MANIFEST_OWN)
    write_manifest(
        folder, KIND, manifest.inputs, **(fields | {"verification": record.summary().model_dump()})
    )
    return record.to_json_dict()


def published_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file of a merged model that is published (weights, index, config, tokenizer,
    code, provenance), all but those written after the check: what a passing check vouches for, so
    nothing can be changed or added after it."""
    return hash_files(folder, exclude=(MANIFEST, *CARD_FILES, VERIFICATION))


def _verdict_problem(result: VerificationRecord) -> str | None:
    """Why the recorded figures do not make the recorded verdict a pass, or None."""
    if result.problems:
        return f"failed its equivalence check: {result.problems[0]}"
    if not result.passed:
        return "equivalence check did not pass"
    method = MERGE_METHODS.get(result.method)
    if method is None:
        return f"was checked by an unknown method {result.method!r}"
    if method.verification == "adapter":
        diff, tolerance = result.max_abs_logit_diff, result.tolerance
        if diff is None or tolerance is None or not diff <= tolerance:
            return f"max |logit diff| {diff} is not within the tolerance {tolerance}, yet it says passed"
    elif getattr(result, "logits_finite", None) is not True:
        return "logits on the probes are not recorded finite, yet it says passed"
    return None


def require_verified(merged_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Refuse a merged model whose equivalence check is missing, failed, or older than its files.

    The verdict is recomputed from the figures in ``verification.json`` (the manifest's summary
    must agree with them), and its hash must cover every file that would be published.
    """
    folder = Path(merged_dir)
    manifest = load_manifest(folder, KIND)
    summary = manifest.verification if isinstance(manifest, MergedManifest) else None
    if not summary:
        raise NotVerified(f"{folder}: merged model not verified; run `hubkit verify merge {folder}` first")
    if not (folder / VERIFICATION).is_file():
        raise NotVerified(f"{folder / VERIFICATION}: missing; run `hubkit verify merge {folder}` again")
    result = VerificationRecord.read(folder)
    if result.summary().model_dump() != summary.model_dump(include=set(VerificationSummary.model_fields)):
        raise NotVerified(f"{folder / MANIFEST}: verification summary differs from {VERIFICATION}")
    if problem := _verdict_problem(result):
        raise NotVerified(f"{folder}: merged model {problem} (see {VERIFICATION})")
    if digest_of(published_hashes(folder)) != summary.weights_sha256:
        raise NotVerified(f"{folder}: files changed or added since `hubkit verify merge`; run it again")
    return summary.model_dump(mode="json")


def require_verified_if_merged(folder: str | os.PathLike[str]) -> None:
    """``require_verified`` when ``folder`` is a hubkit merged model; any other folder (a dataset,
    an adapter, a model made elsewhere) has no equivalence check to pass."""
    if artifact_kind(folder) == KIND:
        require_verified(folder)
