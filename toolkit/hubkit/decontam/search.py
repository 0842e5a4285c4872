"""Every pair of unit vectors at or above a cosine threshold, in bounded memory.

The similarity matrix is computed one block at a time (at most ``BLOCK_ELEMENTS`` scores,
64 MiB of float32) and only the pairs over the threshold leave a block, so a million
training rows against 30k benchmark questions never hold an N x M matrix.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

BLOCK_ELEMENTS = 1 << 24
MAX_BLOCK_COLUMNS = 32768
# float32 rounding: a text scores 1 - 2e-7 against itself, so a threshold of 1.0 would miss
# copies; scores this close below the threshold count as reaching it.
ROUNDING = 1e-6


def similar_pairs(
    rows: np.ndarray,
    columns: np.ndarray,
    threshold: float,
    below_diagonal: bool = False,
    block_elements: int = BLOCK_ELEMENTS,
) -> Iterator[tuple[int, int, float]]:
    """Yield ``(row, column, cosine)`` for every pair with cosine >= ``threshold``.

    Inputs are unit-length float32 matrices (one vector a row). ``below_diagonal`` (for a
    matrix against itself) keeps only pairs with ``column < row``: each unordered pair once.
    Pairs come in row order, and in column order within a row. Scores within ``ROUNDING``
    below the threshold count as at it.
    """
    n, m = len(rows), len(columns)
    threshold -= ROUNDING
    if n == 0 or m == 0:
        return
    width = min(m, MAX_BLOCK_COLUMNS)
    height = max(1, block_elements // width)
    for r0 in range(0, n, height):
        r1 = min(n, r0 + height)
        found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for c0 in range(0, min(m, r1) if below_diagonal else m, width):
            c1 = min(m, c0 + width)
            scores = rows[r0:r1] @ columns[c0:c1].T
            if below_diagonal and c1 > r0:
                scores[np.arange(c0, c1)[None, :] >= np.arange(r0, r1)[:, None]] = -np.inf
            # Few rows have a hit: find them by their maximum (NaN skipped, so one bad vector
            # hides no other hit), then look for columns only there (3x faster than nonzero
            # over the whole block).
            hit = np.flatnonzero(np.fmax.reduce(scores, axis=1) >= threshold)
            i, j = np.nonzero(scores[hit] >= threshold)
            found.append((hit[i] + r0, j + c0, scores[hit[i], j]))
        if not found:
            continue
        i, j, s = (np.concatenate(parts) for parts in zip(*found, strict=True))
        for k in np.lexsort((j, i)):
            yield int(i[k]), int(j[k]), float(s[k])
