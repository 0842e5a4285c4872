"""What counts as a credential in a file about to be published, reading it the way a reader could.

A secret is found by the file's name (``.env``, ``*.pem``, ``.pypirc``...) or by its shape in
the bytes. The bytes are read as they are and also decoded where hubkit can decode them: every
string cell of a parquet or Arrow file (whatever its compression), the members of ``.gz`` and
``.zip`` files, UTF-16 text, and long base64 runs, so a token is found inside a zstd-compressed
``data.parquet``, a zipped ``.env`` or a base64 docker config just as in plain text.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import fnmatch
import gzip
import io
import re
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

# Files that are credentials by name, whatever they hold.
CREDENTIAL_FILES = (
    ".env",
    ".env.*",
    "*.env",
    ".envrc",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.ppk",
    ".git-credentials",
    ".netrc",
    "_netrc",
    ".npmrc",
    ".pypirc",
    ".dockercfg",
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
)
# Paths that are credentials wherever they sit: the AWS CLI's and kubectl's stores.
CREDENTIAL_PATHS = ("*.aws/credentials", "*.kube/config", "*.docker/config.json")


class Shape(NamedTuple):
    """A secret recognisable by its shape; ``pattern`` runs only where one of ``anchors`` occurs,
    so clean gigabytes of weights cost a few ``bytes.find`` calls per MiB, not a regex each."""

    what: str
    anchors: tuple[bytes, ...]
    pattern: re.Pattern[bytes]


CREDENTIAL_PATTERNS: tuple[Shape, ...] = (
    Shape("Hugging Face token", (b"hf_",), re.compile(rb"\bhf_[A-Za-z0-9]{30,}")),
    Shape("Hugging Face OAuth token", (b"hf_oauth_",), re.compile(rb"\bhf_oauth_[A-Za-z0-9_]{30,}")),
    Shape("AWS access key id", (b"AKIA", b"ASIA"), re.compile(rb"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    Shape(
        "AWS secret access key",
        (b"secret", b"SECRET", b"Secret"),
        re.compile(
            rb"(?i)aws_?secret_?(?:access_?)?key[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"
        ),
    ),
    Shape(
        "GitHub token",
        (b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_", b"github_pat_"),
        re.compile(rb"\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{40,})"),
    ),
    Shape("OpenAI API key", (b"sk-",), re.compile(rb"\bsk-(?:proj-)?[A-Za-z0-9_-]{32,}")),
    Shape("Google API key", (b"AIza",), re.compile(rb"\bAIza[0-9A-Za-z_-]{35}")),
    Shape("Slack token", (b"xox",), re.compile(rb"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    Shape(
        "npm token",
        (b"npm_", b"_auth"),
        re.compile(
            rb"(?m)\bnpm_[A-Za-z0-9]{36}\b|^\s*(?://\S*:)?_auth(?:Token)?\s*=\s*[A-Za-z0-9+/=_.-]{8,}\s*$"
        ),
    ),
    Shape("PyPI token", (b"pypi-AgE",), re.compile(rb"\bpypi-AgE[A-Za-z0-9_-]{50,}")),
    Shape(
        "private key",
        (b"PRIVATE KEY",),
        re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    ),
    Shape("PuTTY private key", (b"PuTTY-User-Key-File-",), re.compile(rb"PuTTY-User-Key-File-\d+:")),
    Shape(  # the DER-encoded OID of a PKCS#12 key bag, plain or shrouded
        "PKCS#12 key store",
        (b"\x2a\x86\x48\x86\xf7\x0d\x01\x0c\x0a\x01",),
        re.compile(rb"\x06\x0b\x2a\x86\x48\x86\xf7\x0d\x01\x0c\x0a\x01[\x01\x02]"),
    ),
    Shape(
        "docker registry auth",
        (b'"auth"', b'"identitytoken"'),
        re.compile(rb"\"(?:auth|identitytoken)\"\s*:\s*\"[A-Za-z0-9+/=_.-]{8,}\""),
    ),
    Shape(
        "Kubernetes credential",
        (b"client-key-data", b"token:"),
        re.compile(rb"(?m)\bclient-key-data:\s*[A-Za-z0-9+/=]{16,}|^\s*token:\s*\S{20,}"),
    ),
    Shape(
        "database URL with a password",
        (b"://",),
        re.compile(
            rb"\b(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|mssql|sqlserver|"
            rb"oracle|clickhouse|cockroachdb|snowflake)(?:\+[a-z0-9]+)?://[^\s:/@\"'<>]+:[^\s@/\"'<>]+@"
        ),
    ),
)
# Encodings hidden text comes in: runs of base64 (standard or URL-safe, lines wrapped or not).
_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/_-](?:[A-Za-z0-9+/_-]|\r?\n(?=[A-Za-z0-9+/_-])){27,}={0,2}")
_CHUNK = 1 << 20
_OVERLAP = 256  # longer than any pattern above, so a secret split across chunks is still seen
_CARRY_LIMIT = 4 << 20  # a base64 run cut by a chunk boundary is carried whole up to this size
_IN_MEMORY_LIMIT = 1 << 30  # a compressed member is unpacked to read its cells up to this size
_DEPTH = 3  # archives in archives, base64 in base64: how deep decoding goes
_TABLES = (".parquet", ".arrow", ".feather", ".ipc")


def credential_in(path: Path, name: str) -> str | None:
    """Why the file at ``path``, published as ``name``, is or holds a credential; None if it is clean."""
    if _credential_name(name):
        return f"credential file ({name.rsplit('/', 1)[-1]})"
    with open(path, "rb") as fh:
        what = _in_stream(fh, name, 0)
    return f"contains a {what}" if what else None


def _credential_name(name: str) -> bool:
    """Whether a file's name (a relative path) alone makes it a credential."""
    base = name.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(base, pattern) for pattern in CREDENTIAL_FILES) or any(
        fnmatch.fnmatch(f"/{name}", pattern) for pattern in CREDENTIAL_PATHS
    )


def _in_stream(fh: BinaryIO, name: str, depth: int) -> str | None:
    """The kind of secret in a readable, seekable stream: its raw bytes, then what decodes from it."""
    head = fh.read(4)
    fh.seek(0)
    if what := _in_raw(fh, depth):
        return what
    if depth >= _DEPTH:
        return None
    lower = name.lower()
    try:
        if lower.endswith(_TABLES) or head == b"PAR1" or head == b"ARRO":
            fh.seek(0)
            if what := _in_table(fh, lower):
                return f"{what} (in a table cell)"
        if head[:2] == b"\x1f\x8b":
            fh.seek(0)
            inner = lower.removesuffix(".gz").removesuffix(".gzip")
            with gzip.GzipFile(fileobj=fh) as member:
                if what := _in_member(member, inner, depth):
                    return f"{what} (gzip-compressed)"
        if head == b"PK\x03\x04":
            fh.seek(0)
            with zipfile.ZipFile(fh) as archive:
                for info in archive.infolist():
                    if info.is_dir():
                        continue
                    if _credential_name(info.filename):
                        return f"credential file named {info.filename} (in the zip)"
                    with archive.open(info) as member:
                        if what := _in_member(member, info.filename, depth):
                            return f"{what} (in {info.filename} in the zip)"
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile, ValueError):
        return None  # not the format its name or first bytes suggest: the raw scan is what it gets
    return None


def _in_member(member: BinaryIO, name: str, depth: int) -> str | None:
    """A member of an archive: unpacked into memory when a table or archive needs seeking, else streamed."""
    if name.endswith((*_TABLES, ".zip", ".gz")):
        data = member.read(_IN_MEMORY_LIMIT)
        return _in_stream(io.BytesIO(data), name, depth + 1)
    return _in_raw(member, depth + 1)


def _in_raw(fh: BinaryIO, depth: int) -> str | None:
    """Stream the bytes through the patterns (and base64), as UTF-16 too when they look like it."""
    first = fh.read(_CHUNK)
    encoding = _utf16(first)
    blocks: Iterable[bytes] = _chain(first, iter(lambda: fh.read(_CHUNK), b""))
    if encoding is not None:
        blocks = _recoded(blocks, encoding)
    tail = b""
    for block in blocks:
        window = tail + block
        if what := _in_bytes(window, depth):
            return what
        tail = window[-_OVERLAP:]
        last_run = _trailing_base64(window)
        if last_run is not None and len(window) - last_run > _OVERLAP:
            tail = window[max(last_run, len(window) - _CARRY_LIMIT) :]
    return None


def _in_bytes(data: bytes, depth: int) -> str | None:
    for shape in CREDENTIAL_PATTERNS:
        if any(anchor in data for anchor in shape.anchors) and shape.pattern.search(data):
            return shape.what
    if depth >= _DEPTH or _BASE64_RUN_ANCHOR not in data.translate(_BASE64_MARKS):
        return None
    for run in _BASE64_RUN.finditer(data):
        text = run.group().replace(b"\r", b"").replace(b"\n", b"").translate(_URLSAFE)
        text = text.rstrip(b"=")
        try:
            decoded = base64.b64decode(text[: len(text) - len(text) % 4])
        except binascii.Error:
            continue
        if what := _in_bytes(decoded, depth + 1) or _in_bytes(_utf16_text(decoded), depth + 1):
            return f"{what} (base64-encoded)"
    return None


_URLSAFE = bytes.maketrans(b"-_", b"+/")
_BASE64_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-=\r\n"
# base64 characters marked 1, others 0: a run long enough to decode is a run of ones
_BASE64_MARKS = bytes(int(bytes([i]) in _BASE64_CHARS[:-3]) for i in range(256))
_BASE64_RUN_ANCHOR = b"\x01" * 20


def _trailing_base64(window: bytes) -> int | None:
    """Where a base64 run that reaches the end of ``window`` starts, if one does."""
    start = len(window.rstrip(_BASE64_CHARS))
    return start if start < len(window) - 27 else None


def _utf16(first: bytes) -> str | None:
    """'utf-16-le'/'utf-16-be' when a file's first bytes are UTF-16 text (BOM, or NULs every other byte)."""
    if first[:2] == b"\xff\xfe":
        return "utf-16-le"
    if first[:2] == b"\xfe\xff":
        return "utf-16-be"
    sample = first[:4096]
    if len(sample) < 16:
        return None
    even, odd = sample[0::2], sample[1::2]
    if odd.count(0) > 0.9 * len(odd) and even.count(0) < 0.1 * len(even):
        return "utf-16-le"
    if even.count(0) > 0.9 * len(even) and odd.count(0) < 0.1 * len(odd):
        return "utf-16-be"
    return None


def _utf16_text(data: bytes) -> bytes:
    """``data`` re-encoded as UTF-8 when it is UTF-16 text, else nothing to scan again."""
    encoding = _utf16(data)
    return data.decode(encoding, errors="replace").encode() if encoding else b""


def _recoded(blocks: Iterable[bytes], encoding: str) -> Iterator[bytes]:
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    for block in blocks:
        yield decoder.decode(block).encode()
    yield decoder.decode(b"", final=True).encode()


def _chain(first: bytes, rest: Iterable[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


def _in_table(fh: BinaryIO, name: str) -> str | None:
    """Every string and binary cell of a parquet or Arrow IPC file, batch by batch."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if fh.read(4) == b"PAR1" or name.endswith(".parquet"):
        fh.seek(0)
        batches: Iterable[pa.RecordBatch] = pq.ParquetFile(fh).iter_batches(batch_size=4096)
    else:
        fh.seek(0)
        try:
            reader = pa.ipc.open_file(fh)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        except pa.ArrowInvalid:
            fh.seek(0)
            batches = pa.ipc.open_stream(fh)
    try:
        for batch in batches:
            for column in batch.columns:
                for cells in _text_arrays(column):
                    values = [v for v in cells.cast(pa.large_binary()).to_pylist() if v is not None]
                    if what := _in_bytes(b"\n".join(values), 0):
                        return what
    except pa.ArrowException:
        return None
    return None


def _text_arrays(array) -> Iterator:
    """The string and binary leaves of an Arrow array, through lists, structs, maps and dictionaries."""
    import pyarrow as pa

    kind = array.type
    if pa.types.is_dictionary(kind):
        yield from _text_arrays(array.dictionary)
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind):
        yield array
    elif pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        yield array
    elif pa.types.is_map(kind):
        yield from _text_arrays(array.keys)
        yield from _text_arrays(array.items)
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        yield from _text_arrays(array.flatten())
    elif pa.types.is_struct(kind):
        for child in array.flatten():
            yield from _text_arrays(child)
