"""Wall time of ``hubkit push`` for a folder of many small files: the first push and a no-op re-push.

A local Hub runs in a subprocess (``hubkit hub serve``). The folder (default 1,500 files of a
few hundred bytes, in 30 subfolders) is pushed twice with ``push_folder`` as it is now, whose
round-trip check compares every file's git blob id (or LFS sha256) with one tree listing; and
twice more, to a second repo, with the round-trip check hubkit had before (the same listing,
then one ``hf_hub_download``, a HEAD and a GET, per regular file, hashed locally) swapped in as
the baseline. Everything else in the push is the same code in both.

    .venv/bin/python tests/benchmarks/bench_push.py [--files 1500] [--dir /tmp]

Target: a no-op re-push of 1,500 small files under 5 s. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hub_helpers import HubProcess, point_clients_at  # noqa: E402  (tests/, not a package)

TARGET_S = 5.0


def _per_file_round_trip(api, repo_id: str, repo_type: str, commit: str, files: dict[str, Path]) -> None:
    """The round-trip check as hubkit ran it before: a download per regular file, then its sha256."""
    from hubkit.artifacts import sha256_file
    from hubkit.errors import HubkitError
    from hubkit.publish import _remote_files

    remote = _remote_files(api, repo_id, repo_type, commit)
    with tempfile.TemporaryDirectory(prefix="hubkit-verify-") as tmp:
        for rel in sorted(files):
            entry = remote[rel]
            if entry.lfs is not None:
                remote_sha = entry.lfs.sha256
            else:
                fetched = api.hf_hub_download(
                    repo_id, rel, repo_type=repo_type, revision=commit, local_dir=tmp
                )
                remote_sha = sha256_file(fetched)
            if remote_sha != sha256_file(files[rel]):
                raise HubkitError(f"{repo_id}: {rel} differs")


def _timed(call) -> tuple[float, object]:
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1500, help="number of small files (default 1500)")
    parser.add_argument("--dir", default=None, help="scratch folder (default: the system temp folder)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-push-", dir=args.dir))
    server = HubProcess(work / "hub")
    point_clients_at(server.endpoint, work / "hf_home")
    from hubkit import publish

    folder = work / "folder"
    for i in range(args.files):
        path = folder / f"part-{i % 30:02d}" / f"row-{i:05d}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f'{{"id": {i}, "text": "{"small file " * (i % 20 + 5)}"}}\n')
    server.start()
    try:
        first_s, first = _timed(lambda: publish.push_folder(folder, "hubkit/bench-push"))
        noop_s, noop = _timed(lambda: publish.push_folder(folder, "hubkit/bench-push"))
        assert first.created_commit and not noop.created_commit and noop.uploaded_bytes == 0

        bulk_check = publish.verify_round_trip
        publish.verify_round_trip = _per_file_round_trip
        try:
            base_first_s, _ = _timed(lambda: publish.push_folder(folder, "hubkit/bench-push-baseline"))
            base_noop_s, base_noop = _timed(lambda: publish.push_folder(folder, "hubkit/bench-push-baseline"))
            assert not base_noop.created_commit
        finally:
            publish.verify_round_trip = bulk_check
    finally:
        server.kill()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nfolder: {args.files} small files")
    print(f"{'push':<22}{'baseline s':>12}{'now s':>9}{'speed-up':>10}")
    print(f"{'first push':<22}{base_first_s:>12.2f}{first_s:>9.2f}{base_first_s / first_s:>9.1f}x")
    print(f"{'no-op re-push':<22}{base_noop_s:>12.2f}{noop_s:>9.2f}{base_noop_s / noop_s:>9.1f}x")
    verdict = "OK" if noop_s < TARGET_S else "OVER TARGET"
    print(f"no-op re-push target < {TARGET_S:.0f} s: {verdict}")
    if noop_s >= TARGET_S:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
