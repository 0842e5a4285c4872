"""`hubkit verify dataset|adapter|merged`: re-derive a published artifact's claims from its own files.

SOURCE is a folder or a Hub repo id (at ``revision``). Nothing it says is taken on trust: a
dataset's leak check is run again with the benchmarks, revisions, embedding model and threshold
its certificate names; an adapter's files are hashed again and its recorded certificate compared
with the published dataset's; a merged model's equivalence check is run again (base + adapter
against the merged weights) on a scratch copy. Each claim comes back as claimed / recomputed / ok.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .artifacts import digest_of, sha256_file
from .errors import HubkitError, hub_errors
from .gates import check_unchanged
from .portable import BUNDLED, bundled_path, recall_location
from .provenance import certificate_content
from .schemas import (
    DATA_FILE,
    MANIFEST,
    AdapterProvenance,
    LeakCertificate,
    Manifest,
    VerificationRecord,
)


@dataclass(frozen=True)
class Claim:
    """One claim of an artifact, what recomputing it gave, and whether the two agree."""

    name: str
    claimed: Any
    recomputed: Any
    ok: bool


def render(claims: list[Claim]) -> str:
    """The claims as a table: claim / claimed / recomputed / ok."""
    rows = [("claim", "claimed", "recomputed", "ok")]
    rows += [(c.name, _short(c.claimed), _short(c.recomputed), "ok" if c.ok else "MISMATCH") for c in claims]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _short(value: Any) -> str:
    """A table cell: sha256 digests cut to 12 characters, a structured value (a rule) as its digest."""
    if isinstance(value, dict | list) and len(str(value)) > 40:
        return f"{len(value)} entries, sha256 {digest_of(value)[:12]}"
    return re.sub(r"\b([0-9a-f]{12})[0-9a-f]{52}\b", r"\1", str(value))


def _claim(name: str, claimed: Any, recomputed: Any) -> Claim:
    return Claim(name, claimed, recomputed, claimed == recomputed)


@contextmanager
def fetched(source: str, repo_type: str, revision: str | None = None) -> Iterator[Path]:
    """A writable scratch copy of SOURCE (a folder, linked file by file, or a Hub repo downloaded),
    so re-running a check never touches what it checks."""
    with tempfile.TemporaryDirectory(prefix="hubkit-verify-") as tmp:
        copy = Path(tmp) / "artifact"
        folder = Path(source).expanduser()
        if folder.is_dir():
            if revision is not None:
                raise HubkitError(
                    f"--revision {revision}: {source} is a local folder, which has no revisions"
                )
            shutil.copytree(folder, copy, copy_function=_link_or_copy)
        else:
            from huggingface_hub import snapshot_download
            from huggingface_hub.errors import HFValidationError

            try:
                snapshot_download(source, repo_type=repo_type, revision=revision, local_dir=copy)
            except HFValidationError:
                raise HubkitError(f"{source}: neither a folder nor a Hub repo id") from None
            except hub_errors() as exc:
                raise HubkitError(f"{source}: cannot download it ({str(exc).splitlines()[0]})") from None
            shutil.rmtree(copy / ".cache", ignore_errors=True)
            attributes, manifest = copy / ".gitattributes", copy / MANIFEST
            listed = Manifest.read(copy).files if manifest.is_file() else {}
            if attributes.is_file() and ".gitattributes" not in listed:
                attributes.unlink()  # the Hub's own, not the artifact's
        yield copy


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # a rewrite replaces the link (atomic writes), never the original
    except OSError:
        shutil.copy2(src, dst)


def _files_claim(folder: Path) -> Claim:
    """Every file hashes to what the manifest lists."""
    files = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}
    try:
        check_unchanged(folder, files, Manifest.read(folder))
        return Claim("files hash to the manifest", "yes", "yes", True)
    except HubkitError as exc:
        return Claim("files hash to the manifest", "yes", str(exc).replace(f"{folder}/", ""), False)


def verify_dataset(
    source: str, revision: str | None = None, benchmark_files: dict[str, str] | None = None
) -> list[Claim]:
    """Run the leak check again as the certificate describes it and compare every figure."""
    import pyarrow.parquet as pq

    from .decontam import check_dataset, load_benchmarks
    from .decontam.check import LEAKING
    from .decontam.embed import DEFAULT_MODEL

    with fetched(source, "dataset", revision) as folder:
        certificate = LeakCertificate.read(folder, needed_by="hubkit verify dataset")
        data = folder / DATA_FILE
        claims = [_files_claim(folder), _claim("data sha256", certificate.dataset_sha256, sha256_file(data))]
        rows = pq.read_metadata(data).num_rows
        checked, removed = certificate.rows_checked, certificate.rows_removed
        claims.append(_claim("rows kept", None if None in (checked, removed) else checked - removed, rows))
        recorded = certificate.benchmarks
        if not isinstance(recorded, dict) or not recorded:
            raise HubkitError(
                f"{source}: {LeakCertificate.FILE} records no benchmark sources to check it against"
            )
        files = _benchmark_sources(recorded, benchmark_files or {})
        names = list(recorded)
        for bench in load_benchmarks(names, files):
            claims.append(_claim(f"{bench.name} sha256", recorded[bench.name].get("sha256"), bench.sha256))
        method = (certificate.rule or {}).get("method", "platypus")
        result = check_dataset(
            folder,
            benchmarks=names,
            method=method,
            threshold=certificate.threshold if method == "platypus" else None,
            model=certificate.embedding_model or DEFAULT_MODEL,
            benchmark_files=files,
            progress=False,
        )
        kept = set(certificate.kept_categories)
        leaking = [h for h in result.hits if h["category"] in LEAKING and h["category"] not in kept]
        claims.append(_claim("decision rule", certificate.rule, result.report["rule"]))
        claims.append(_claim("embedding model revision", certificate.embedding_model_revision,
                             result.report["embedding_model_revision"]))  # fmt: skip
        claims.append(_claim("leaking rows left", 0, len({h["row"] for h in leaking})))
        claims.append(_claim("passed", certificate.passed, not leaking))
    return claims


def _benchmark_sources(recorded: dict[str, Any], given: dict[str, str]) -> dict[str, str]:
    """Where each benchmark named by a certificate loads from: a file given here, a bundled
    ``hubkit:`` file, or the Hub at the recorded revision; a local file recorded by name must be given."""
    from .decontam.benchmarks import LOADERS

    files = {}
    for name, record in recorded.items():
        source, revision = record.get("source") or "", record.get("revision")
        if name in given:
            files[name] = given[name]
        elif source.startswith(BUNDLED):
            files[name] = str(bundled_path(source))
        elif revision:
            files[name] = f"hub:{LOADERS[name].hub_id}@{revision}"
        else:
            raise HubkitError(
                f"benchmark {name!r}: checked against a local file ({source}); "
                f"give it with --benchmark-file {name}=PATH"
            )
    return files


def verify_adapter(
    source: str, dataset: str | None = None, revision: str | None = None, dataset_revision: str | None = None
) -> list[Claim]:
    """Hash the adapter's files again and compare its recorded dataset and certificate with the
    published dataset (``dataset``: a folder or Hub id; default: where this machine has it)."""
    with fetched(source, "model", revision) as folder:
        provenance = AdapterProvenance.read(folder, needed_by="hubkit verify adapter")
        claims = [_files_claim(folder)]
        certificate = provenance.leak_certificate
        data_sha256 = provenance.dataset.data_sha256
        found = recall_location(data_sha256)
        where = dataset or (str(found) if found else None)
        if where is None:
            raise HubkitError(
                f"{source}: give the dataset it was trained on with --dataset (a folder or Hub id)"
            )
        with fetched(where, "dataset", dataset_revision) as data_folder:
            published = LeakCertificate.read(data_folder, needed_by="hubkit verify adapter")
            claims.append(_claim("dataset sha256", data_sha256, sha256_file(data_folder / DATA_FILE)))
            claims.append(
                _claim("certificate = the dataset's", _digest(certificate)[:12], _digest(published)[:12])
            )
        claims.append(_claim("certificate passed", True, certificate is not None and certificate.passed))
    return claims


def _digest(certificate: LeakCertificate | None) -> str:
    return "none" if certificate is None else digest_of(certificate_content(certificate))


def verify_merged(source: str, revision: str | None = None) -> list[Claim]:
    """Run the equivalence check again on a scratch copy and compare it with the recorded one."""
    from .merge import verify_merge
    from .merge.verify import published_hashes

    with fetched(source, "model", revision) as folder:
        recorded = VerificationRecord.read(folder, needed_by="hubkit verify merged")
        claims = [_files_claim(folder)]
        claims.append(_claim("files sha256", recorded.weights_sha256, digest_of(published_hashes(folder))))
        result = verify_merge(folder)
        claims.append(_claim("passed", recorded.passed, result["passed"]))
        if result.get("max_abs_logit_diff") is not None:
            claimed, got, tolerance = (
                recorded.max_abs_logit_diff,
                result["max_abs_logit_diff"],
                result["tolerance"],
            )
            ok = isinstance(claimed, int | float) and abs(claimed - got) <= tolerance and got <= tolerance
            claims.append(Claim("max |logit diff|", f"{claimed:.3g}" if ok else claimed, f"{got:.3g}", ok))
        claims += [Claim("problem", "none", problem, False) for problem in result["problems"]]
    return claims
