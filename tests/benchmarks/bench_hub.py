"""Throughput and memory of the local Hub: one large file up and down with the stock client.

Runs ``hubkit hub serve`` in a subprocess, uploads a random file with ``HfApi.upload_file``
(LFS, basic transfer) and downloads it with ``hf_hub_download``, and compares both with a
plain ``shutil.copyfile`` of the same file on the same disk, in the same run. The server's
peak RSS (VmHWM) shows that large files are streamed, never held in memory.

    .venv/bin/python tests/benchmarks/bench_hub.py [--size-mb 1024] [--dir /tmp]

Not collected by pytest (not a test_*.py file).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hub_helpers import HubProcess, point_clients_at  # noqa: E402  (tests/, not a package)

RSS_LIMIT_MB = 200
CHUNK = 16 * 1024 * 1024


def _write_random(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(CHUNK, left))
            digest.update(block)
            f.write(block)
            left -= len(block)
        f.flush()
        os.fsync(f.fileno())  # no writeback of the source left to slow down the timed runs
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _rate(size: int, seconds: float) -> float:
    return size / 1e6 / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="file size in MiB (default 1024)")
    parser.add_argument("--dir", default=None, help="scratch folder (default: the system temp folder)")
    args = parser.parse_args()
    size = args.size_mb * 2**20

    work = Path(tempfile.mkdtemp(prefix="bench-hub-", dir=args.dir))
    server = HubProcess(work / "hub")
    point_clients_at(server.endpoint, work / "hf_home")
    from huggingface_hub import HfApi, hf_hub_download  # after HF_ENDPOINT / HF_HUB_DISABLE_XET

    server.start()
    try:
        source = work / "source.bin"
        print(f"writing {args.size_mb} MiB of random data to {work} ...", flush=True)
        expected = _write_random(source, size)

        t0 = time.perf_counter()
        shutil.copyfile(source, work / "copy.bin")
        copy_s = time.perf_counter() - t0
        with open(work / "copy.bin", "rb+") as f:  # the Hub fsyncs what it stores; a copy may not
            os.fsync(f.fileno())
        durable_s = time.perf_counter() - t0
        (work / "copy.bin").unlink()

        api = HfApi(token=False)
        api.create_repo("hubkit/bench")
        t0 = time.perf_counter()
        api.upload_file(path_or_fileobj=str(source), path_in_repo="blob.bin", repo_id="hubkit/bench")
        upload_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        downloaded = Path(hf_hub_download("hubkit/bench", "blob.bin", cache_dir=work / "cache", token=False))
        download_s = time.perf_counter() - t0
        t0 = (
            time.perf_counter()
        )  # the same GET, read and dropped: the server's speed without client disk writes
        url = f"{os.environ['HF_ENDPOINT']}/hubkit/bench/resolve/main/blob.bin"
        with urllib.request.urlopen(url, timeout=600) as response:
            while response.read(CHUNK):
                pass
        discard_s = time.perf_counter() - t0
        assert downloaded.stat().st_size == size and _sha256(downloaded) == expected, "download differs"
    finally:
        server.kill()  # reads its peak RSS first
        shutil.rmtree(work, ignore_errors=True)
    peak = server.peak_mb

    copy, up, down = _rate(size, copy_s), _rate(size, upload_s), _rate(size, download_s)
    durable, discard = _rate(size, durable_s), _rate(size, discard_s)
    print(f"\nfile: {args.size_mb} MiB ({size / 1e6:.0f} MB)")
    print(f"{'operation':<34}{'seconds':>9}{'MB/s':>9}{'vs copy':>9}")
    print(f"{'shutil.copyfile (same disk)':<34}{copy_s:>9.2f}{copy:>9.0f}{1:>9.2f}")
    print(f"{'shutil.copyfile + fsync':<34}{durable_s:>9.2f}{durable:>9.0f}{durable / copy:>9.2f}")
    print(f"{'upload_file (sha256 + LFS PUT)':<34}{upload_s:>9.2f}{up:>9.0f}{up / copy:>9.2f}")
    print(f"{'hf_hub_download':<34}{download_s:>9.2f}{down:>9.0f}{down / copy:>9.2f}")
    print(f"{'GET /resolve, read and dropped':<34}{discard_s:>9.2f}{discard:>9.0f}{discard / copy:>9.2f}")
    verdict = "OK" if peak < RSS_LIMIT_MB else "OVER LIMIT"
    print(f"server peak RSS: {peak:.0f} MB (limit {RSS_LIMIT_MB} MB): {verdict}")
    if peak >= RSS_LIMIT_MB:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
