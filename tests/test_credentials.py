"""The credential scan reads what a reader could: table cells whatever the compression, archive
members, UTF-16, base64, and the credential formats of AWS, PGP, PuTTY, PKCS#12, npm, PyPI,
docker, kubectl and database URLs; a real model and dataset folder stays clean."""

from __future__ import annotations

import base64
import gzip
import io
import json
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

import pyarrow as pa
import pytest

from hubkit.data import write_rows
from hubkit.publish import scan_for_credentials

HF_TOKEN = "hf_kT4qZ8vN2mR7xW1pL9sB3yH6cJ0dF5gAeU"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def _parquet(path: Path) -> None:
    lines = (files("hubkit") / "sample_data" / "gsm8k_train_sample.jsonl").read_text().splitlines()
    rows = [
        {"instruction": r["question"], "input": "", "output": r["answer"], "data_source": "gsm8k"}
        for r in map(json.loads, lines[:100])
    ]
    rows[42]["output"] += f" (my token is {HF_TOKEN})"
    write_rows(rows, path)
    assert HF_TOKEN.encode() not in path.read_bytes()  # zstd-compressed: not in the raw bytes


def _arrow(path: Path) -> None:
    table = pa.table({"id": list(range(100)), "tags": [["a", "b"]] * 99 + [["c", HF_TOKEN]]})
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_file(str(path), table.schema, options=options) as writer:
        writer.write_table(table)


def _zip(member: str, text: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("readme.txt", "nothing here\n")
            archive.writestr(member, text)

    return write


def _zipped_parquet(path: Path) -> None:
    _parquet(path.with_name("inner.parquet"))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.write(path.with_name("inner.parquet"), "data/train.parquet")
    path.with_name("inner.parquet").unlink()


def _text(text: str, encoding: str = "utf-8") -> Callable[[Path], None]:
    return lambda path: path.write_bytes(text.encode(encoding))


def _p12(path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    key, cert = path.with_name("k.pem"), path.with_name("c.pem")
    run = {"check": True, "capture_output": True}
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:1024",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            "1",
            "-subj",
            "/CN=hubkit-test",
        ],
        **run,
    )
    subprocess.run(
        ["openssl", "pkcs12", "-export", "-inkey", key, "-in", cert, "-out", path, "-passout", "pass:x"],
        **run,
    )
    key.unlink()
    cert.unlink()


ENVIRON = b"PATH=/usr/bin\0HOME=/home/u\0AWS_SECRET_ACCESS_KEY=" + AWS_SECRET.encode() + b"\0LANG=C\0"
WRAPPED = base64.encodebytes(f"#!/bin/sh\nexport HF_TOKEN={HF_TOKEN}\necho done\n".encode() * 3).decode()


@pytest.mark.parametrize(
    ("name", "write", "reason"),
    [
        ("data.parquet", _parquet, "Hugging Face token (in a table cell)"),
        ("cache-00000.arrow", _arrow, "Hugging Face token (in a table cell)"),
        ("notes.ini", _text(f"[default]\naws_secret_access_key = {AWS_SECRET}\n"), "AWS secret access key"),
        ("environ", lambda p: p.write_bytes(ENVIRON), "AWS secret access key"),
        ("key.asc", _text("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF...\n"), "private key"),
        ("key.txt", _text("PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n"), "PuTTY private key"),
        ("bundle.bin", _p12, "PKCS#12 key store"),
        (
            "npm.cfg",
            _text("//registry.npmjs.org/:_authToken=npm_" + "a1B2c3D4e5" * 3 + "a1B2c3\n"),
            "npm token",
        ),
        ("auth.cfg", _text("_auth = dXNlcjpwYXNzd29yZA==\nemail = me@x.org\n"), "npm token"),
        ("upload.cfg", _text("password = pypi-AgEIcHlwaS5vcmc" + "x9Y8z7W6v5" * 6 + "\n"), "PyPI token"),
        (
            "registry.json",
            _text('{"auths": {"ghcr.io": {"auth": "dXNlcjpwYXNzd29yZA=="}}}'),
            "docker registry auth",
        ),
        (
            "cluster.yaml",
            _text("users:\n- name: me\n  user:\n    client-key-data: LS0tLS1CRUdJTiBSU0EK\n"),
            "Kubernetes credential",
        ),
        (
            "cluster2.yaml",
            _text("users:\n- name: me\n  user:\n    token: eyJhbGciOiJSUzI1NiIsImtpZCI6\n"),
            "Kubernetes credential",
        ),
        (
            "settings.toml",
            _text('url = "postgresql+psycopg://app:s3cr3t@db.internal:5432/prod"\n'),
            "database URL with a password",
        ),
        (
            "mongo.txt",
            _text("mongodb+srv://root:hunter2@cluster0.example.net/"),
            "database URL with a password",
        ),
        ("notes16.txt", _text(f"\ufeffmy token {HF_TOKEN}\n", "utf-16-le"), "Hugging Face token"),
        ("notes16be.txt", _text(f"token {HF_TOKEN} here", "utf-16-be"), "Hugging Face token"),
        ("blob.txt", _text(WRAPPED), "Hugging Face token (base64-encoded)"),
        (
            "config.json",
            _text('{"k": "' + base64.urlsafe_b64encode(HF_TOKEN.encode()).decode() + '"}'),
            "Hugging Face token (base64-encoded)",
        ),
        (
            "log.txt.gz",
            lambda p: p.write_bytes(gzip.compress(f"x\n{HF_TOKEN}\n".encode())),
            "Hugging Face token (gzip-compressed)",
        ),
        ("bundle.zip", _zip("config/.env", "A=1\n"), "credential file named config/.env (in the zip)"),
        (
            "logs.zip",
            _zip("run/log.txt", f"loaded {HF_TOKEN}\n"),
            "Hugging Face token (in run/log.txt in the zip)",
        ),
        (
            "data.zip",
            _zipped_parquet,
            "Hugging Face token (in a table cell) (in data/train.parquet in the zip)",
        ),
    ],
)
def test_a_secret_is_found_however_it_is_stored(tmp_path, name, write, reason):
    root = tmp_path / "folder"
    root.mkdir()
    (root / "README.md").write_text("# fine\n")
    write(root / name)
    assert scan_for_credentials(root) == [(name, f"contains a {reason}")]


@pytest.mark.parametrize(
    "name",
    [".envrc", "prod.env", ".env.local", ".pypirc", ".npmrc", "k.p12", "k.pfx", "k.ppk", ".aws/credentials"],
)
def test_credential_files_by_name(tmp_path, name):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("harmless\n")
    assert scan_for_credentials(tmp_path) == [(name, f"credential file ({Path(name).name})")]


def test_real_artifacts_are_clean(tmp_path, tiny_llama):
    """No false alarm on what hubkit publishes: weights, tokenizer, configs, manifests, data, code."""
    root = tmp_path / "artifact"
    shutil.copytree(tiny_llama, root)
    rows = [
        {"instruction": f"What is {i} + {i}?", "input": "", "output": str(2 * i), "data_source": "x"}
        for i in range(2000)
    ]
    write_rows(rows, root / "data.parquet")
    (root / "modeling.py").write_text(
        "class A:\n    def __init__(self, auth_token):\n        self._auth = auth_token\n"
    )
    (root / "sums.json").write_text('{"sha256": "' + "ab12" * 16 + '", "b64": "' + "QUJD" * 40 + '"}')
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.txt", "hello " * 1000)
    (root / "extra.zip").write_bytes(buffer.getvalue())
    assert scan_for_credentials(root) == []
