"""Benchmark decontamination: find training rows that copy, reword or resemble test questions.

``check_dataset`` embeds every training question and every question of the benchmark splits
the Open LLM Leaderboard scored (``benchmarks``), with sentence-transformers (all-MiniLM-L6-v2
by default, offline), and flags every pair at or above the cosine threshold. Each hit is
sorted into one of three categories by the rule in ``categories`` (duplicate, gray area,
similar but different); flagged rows are removed unless their category is kept, and the
cleaned artifact carries a JSON and Markdown report and a leak certificate that training,
merging and the cards carry forward.

Embeddings are cached on disk (``embed``), similarity is computed in bounded blocks
(``search``), and benchmarks load from the Hub or local files (``benchmarks``).
"""

from .benchmarks import LOADERS, Benchmark, Item, load_benchmark, load_benchmarks
from .categories import categorize
from .check import CheckResult, check_dataset, check_recipe
from .embed import DEFAULT_MODEL, Embedder
from .source import SourceOptions, read_dataset, read_source

__all__ = [
    "DEFAULT_MODEL",
    "LOADERS",
    "Benchmark",
    "CheckResult",
    "Embedder",
    "Item",
    "categorize",
    "check_dataset",
    "check_recipe",
    "load_benchmark",
    "load_benchmarks",
    "SourceOptions",
    "read_dataset",
    "read_source",
]
