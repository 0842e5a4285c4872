"""`hubkit verify dataset|adapter|merged`: re-derive a published artifact's claims from its own files.

SOURCE is a folder or a Hub repo id (at ``revision``). Nothing it says is taken on trust: a
dataset's leak check is run again with the benchmarks, revisions, embedding model and threshold
its certificate names; an adapter's files are hashed again and its recorded certificate compared
with the published dataset's; a merged model's equivalence check is run again (base + adapter
against the merged weights) on a scratch copy. Each claim comes back as claimed / recomputed / ok.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .artifacts import MANIFEST, digest_of, read_json, sha256_file
from .errors import HubkitError
from .gates import PROVENANCE, check_unchanged
from .portable import BUNDLED, bundled_path, recall_location
from .provenance import CERTIFICATE, DATA_FILE


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
    text = str(value)
    return text[:12] if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else text


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
            from huggingface_hub.errors import HfHubHTTPError, HFValidationError

            try:
                snapshot_download(source, repo_type=repo_type, revision=revision, local_dir=copy)
            except HFValidationError:
                raise HubkitError(f"{source}: neither a folder nor a Hub repo id") from None
            except (HfHubHTTPError, OSError) as exc:
                raise HubkitError(f"{source}: cannot download it ({str(exc).splitlines()[0]})") from None
            shutil.rmtree(copy / ".cache", ignore_errors=True)
            attributes, manifest = copy / ".gitattributes", copy / MANIFEST
            listed = read_json(manifest).get("files", {}) if manifest.is_file() else {}
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
        check_unchanged(folder, files, read_json(folder / MANIFEST))
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

    with fetched(source, "dataset", revision) as folder:
        certificate = read_json(folder / CERTIFICATE)
        data = folder / DATA_FILE
        claims = [
            _files_claim(folder),
            _claim("data sha256", certificate.get("dataset_sha256"), sha256_file(data)),
        ]
        rows = pq.read_metadata(data).num_rows
        claims.append(_claim("rows kept", certificate["rows_checked"] - certificate["rows_removed"], rows))
        files = _benchmark_sources(certificate["benchmarks"], benchmark_files or {})
        names = list(certificate["benchmarks"])
        for bench in load_benchmarks(names, files):
            claims.append(
                _claim(f"{bench.name} sha256", certificate["benchmarks"][bench.name]["sha256"], bench.sha256)
            )
        result = check_dataset(
            folder,
            benchmarks=names,
            threshold=certificate["threshold"],
            model=certificate["embedding_model"],
            benchmark_files=files,
            progress=False,
        )
        kept = set(certificate.get("kept_categories") or [])
        leaking = [h for h in result.hits if h["category"] in LEAKING and h["category"] not in kept]
        claims.append(_claim("embedding model revision", certificate.get("embedding_model_revision"),
                             result.report["embedding_model_revision"]))  # fmt: skip
        claims.append(_claim("leaking rows left", 0, len({h["row"] for h in leaking})))
        claims.append(_claim("passed", certificate.get("passed"), not leaking))
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
        provenance = read_json(folder / PROVENANCE)
        claims = [_files_claim(folder)]
        recorded = provenance.get("dataset") or {}
        certificate = provenance.get("leak_certificate") or {}
        data_sha256 = recorded.get("data_sha256")
        found = recall_location(data_sha256) if data_sha256 else None
        where = dataset or (str(found) if found else None)
        if where is None:
            raise HubkitError(
                f"{source}: give the dataset it was trained on with --dataset (a folder or Hub id)"
            )
        with fetched(where, "dataset", dataset_revision) as data_folder:
            published = read_json(data_folder / CERTIFICATE)
            claims.append(_claim("dataset sha256", data_sha256, sha256_file(data_folder / DATA_FILE)))
            claims.append(
                _claim("certificate = the dataset's", digest_of(certificate)[:12], digest_of(published)[:12])
            )
        claims.append(_claim("certificate passed", True, certificate.get("passed") is True))
    return claims


def verify_merged(source: str, revision: str | None = None) -> list[Claim]:
    """Run the equivalence check again on a scratch copy and compare it with the recorded one."""
    from .merge import verify_merge
    from .merge.verify import VERIFICATION, published_hashes

    with fetched(source, "model", revision) as folder:
        recorded = read_json(folder / VERIFICATION)
        claims = [_files_claim(folder)]
        claims.append(
            _claim("files sha256", recorded.get("weights_sha256"), digest_of(published_hashes(folder)))
        )
        result = verify_merge(folder)
        claims.append(_claim("passed", recorded.get("passed"), result["passed"]))
        if result.get("max_abs_logit_diff") is not None:
            claimed, got, tolerance = (
                recorded.get("max_abs_logit_diff"),
                result["max_abs_logit_diff"],
                result["tolerance"],
            )
            ok = isinstance(claimed, int | float) and abs(claimed - got) <= tolerance and got <= tolerance
            claims.append(Claim("max |logit diff|", f"{claimed:.3g}" if ok else claimed, f"{got:.3g}", ok))
        claims += [Claim("problem", "none", problem, False) for problem in result["problems"]]
    return claims
