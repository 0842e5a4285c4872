"""The model-merge formulas, written from their papers, for the verification's recomputation.

mergekit runs TIES, DARE, SLERP, breadcrumbs, DELLA, Model Stock and passthrough;
``hubkit verify merge`` recomputes sampled tensors of its output with these functions, which
share no code with mergekit, so a wrong merge (an engine bug, a tensor changed afterwards)
shows as a difference. Each takes the
resolved settings of one tensor (``Settings``), the base tensor (or None) and the other
models' tensors in the configuration's order, and returns the merged tensor in fp32.

DARE's and DELLA's masks are random: mergekit draws them with torch's global generator, and
hubkit seeds it per tensor (``tensor_seed``) before each tensor is merged, so the masks can be
drawn again here, one Bernoulli draw of the delta's shape per model, in the configuration's
order (DELLA: a row-wise draw, 1-D tensors as one row).
This module imports torch lazily, so the method table can name these functions cheaply.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Settings:
    """One tensor's merge parameters, resolved: per other model, then shared."""

    weights: Sequence[float]
    densities: Sequence[float]
    normalize: bool
    rescale: bool
    lam: float = 1.0
    t: float = 0.5
    seed: int | None = None
    name: str = ""
    gammas: Sequence[float] = ()  # breadcrumbs: the fraction of largest entries dropped, per model
    epsilons: Sequence[float] = ()  # DELLA: the spread of keep probabilities around density
    filter_wise: bool = False  # Model Stock: one ratio per row instead of per tensor
    scale: float | None = None  # passthrough: the single input times this, when set


def tensor_seed(seed: int, name: str) -> int:
    """The generator seed for one tensor: a random merge is reproducible tensor by tensor."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little") >> 1


def linear(s: Settings, base: Any, tensors: list[Any]) -> Any:
    """sum(w_i W_i), divided by sum(w_i) when normalized (Model Soups, arXiv 2203.05482).

    Accumulated in place, one input at a time: hubkit's streaming merge runs this formula,
    and its peak memory is a few copies of the largest tensor.
    """
    total = tensors[0].float() * s.weights[0]
    for weight, tensor in zip(s.weights[1:], tensors[1:], strict=True):
        total.add_(tensor.float(), alpha=weight)
    return total.div_(sum(s.weights)) if s.normalize else total


def _delta(tensor: Any, base: Any) -> Any:
    """A model's delta from the base, taken in the merge's dtype (as mergekit takes it), as fp32."""
    return (tensor - base).float()


def _top_k(delta: Any, density: float) -> Any:
    """TIES' trim: keep the ``density`` fraction of entries of largest magnitude (at least one)."""
    import torch

    if density >= 1:
        return delta
    flat = delta.flatten()
    keep = torch.zeros_like(flat)
    k = max(1, int(density * flat.numel()))
    keep[flat.abs().argsort(descending=True)[:k]] = 1
    return (flat * keep).reshape(delta.shape)


def _dropped(delta: Any, density: float, rescale: bool, dtype: Any) -> Any:
    """DARE's drop: keep each entry with probability ``density`` and, to keep the delta's L1
    norm, scale the kept ones by |delta|_1 / |kept|_1 (arXiv 2311.03099, as mergekit rescales)."""
    import torch

    if density >= 1:
        return delta
    # drawn as mergekit draws on CPU: in bf16 for bf16 weights, else in fp32
    kept = delta * torch.bernoulli(torch.full_like(delta, density, dtype=_draw_dtype(dtype))).float()
    return _l1_rescaled(delta, kept, rescale)


def _draw_dtype(dtype: Any) -> Any:
    """Random masks are drawn as mergekit draws them on CPU: in bf16 for bf16 weights, else fp32."""
    import torch

    return torch.bfloat16 if dtype == torch.bfloat16 else torch.float32


def _l1_rescaled(delta: Any, kept: Any, rescale: bool) -> Any:
    """``kept`` scaled by |delta|_1 / |kept|_1 when ``rescale`` (and both are not ~0)."""
    before, after = delta.abs().sum(), kept.abs().sum()
    if not rescale or before < 1e-7 or after < 1e-7:
        return kept
    return kept * (before / after)


def _outliers_dropped(delta: Any, density: float, gamma: float, rescale: bool) -> Any:
    """Model Breadcrumbs' mask (arXiv 2312.06795): drop the ``gamma`` fraction of entries of
    largest magnitude and as many of the smallest as leaves the ``density`` fraction."""
    import torch

    if density >= 1:
        return delta
    count = delta.numel()
    kept_count = int(density * count)
    smallest = max(0, count - kept_count - int(gamma * count))
    ascending = delta.abs().flatten().float().argsort()
    mask = torch.zeros(count)
    mask[ascending[smallest : smallest + kept_count]] = 1
    return _l1_rescaled(delta, delta * mask.reshape(delta.shape), rescale)


def _magnitude_pruned(delta: Any, density: float, epsilon: float, rescale: bool, dtype: Any) -> Any:
    """DELLA's MagPrune (arXiv 2406.11617): each entry kept with a probability growing linearly
    with its magnitude's rank in its row, from density - epsilon (smallest) to density + epsilon
    (largest); the kept ones rescaled to the delta's L1 norm, as mergekit rescales."""
    import torch

    if density >= 1:
        return delta
    if density <= 0:
        return torch.zeros_like(delta)
    if not (0 < density - epsilon and density + epsilon < 1):
        raise ValueError(f"{density=} and {epsilon=} leave (0, 1)")
    draw = _draw_dtype(dtype)
    rows = delta.reshape(1, -1) if delta.dim() < 2 else delta
    rank = rows.abs().argsort(dim=1).argsort(dim=1).to(draw)  # 0 for the smallest in its row
    rank_fraction = (rank / (rows.shape[1] - 1)).clamp(0, 1)
    keep = torch.bernoulli((density - epsilon) + rank_fraction * 2 * epsilon)
    return _l1_rescaled(rows, rows * keep.float(), rescale).reshape(delta.shape)


def _combine(s: Settings, base: Any, deltas: list[Any], consensus: bool) -> Any:
    """base + lambda * (weighted deltas, keeping with ``consensus`` only entries whose sign is
    the sign of their sum), divided by the weights kept when normalized.

    Computed in the merge's dtype (the base's: the configuration's ``dtype``), weights included,
    as the merge is: in bf16 a sum near zero may elect another sign than in fp32."""
    import torch

    dtype = base.dtype
    shape = (-1, *([1] * deltas[0].dim()))
    weights = torch.tensor(list(s.weights), dtype=dtype).reshape(shape)
    weighted = torch.stack([d.to(dtype) for d in deltas]) * weights
    if consensus:
        elected = torch.where(weighted.sum(0) >= 0, 1, -1).to(dtype)
        keep = (weighted.sign() == elected).to(dtype)
    else:
        keep = torch.ones_like(weighted)
    merged = (weighted * keep).sum(0)
    if s.normalize:
        divisor = (weights * keep).sum(0)
        merged = merged / torch.where(divisor.abs() < 1e-8, 1, divisor)
    return (base + merged * s.lam).float()


def task_arithmetic(s: Settings, base: Any, tensors: list[Any]) -> Any:
    """W_base + lambda * sum(w_i (W_i - W_base)) (arXiv 2212.04089), divided by sum(w_i) when
    normalized; accumulated in place, one input at a time, as ``linear``."""
    start = base.float()
    total = None
    for weight, tensor in zip(s.weights, tensors, strict=True):
        delta = tensor.float() - start
        total = delta.mul_(weight) if total is None else total.add_(delta, alpha=weight)
        del delta
    if s.normalize and abs(sum(s.weights)) >= 1e-8:
        total.div_(sum(s.weights))
    return total.mul_(s.lam).add_(start)


def ties(s: Settings, base: Any, tensors: list[Any]) -> Any:
    """TIES (arXiv 2306.01708): trim each delta to its top ``density``, elect signs, disjoint mean."""
    deltas = [_top_k(_delta(t, base), d) for t, d in zip(tensors, s.densities, strict=True)]
    return _combine(s, base, deltas, consensus=True)


def _dare(s: Settings, base: Any, tensors: list[Any], consensus: bool) -> Any:
    import torch

    if s.seed is None:
        raise ValueError("a DARE merge is recomputed from its seed; none was recorded")
    torch.manual_seed(tensor_seed(s.seed, s.name))
    deltas = [
        _dropped(_delta(t, base), d, s.rescale, t.dtype) for t, d in zip(tensors, s.densities, strict=True)
    ]
    return _combine(s, base, deltas, consensus=consensus)


def _sparsified(
    s: Settings, base: Any, tensors: list[Any], sparsify: Callable[..., Any], consensus: bool
) -> Any:
    """Each delta sparsified by ``sparsify(tensor, index, delta)``, then combined."""
    deltas = [sparsify(t, i, _delta(t, base)) for i, t in enumerate(tensors)]
    return _combine(s, base, deltas, consensus=consensus)


def _breadcrumbs(s: Settings, base: Any, tensors: list[Any], consensus: bool) -> Any:
    return _sparsified(
        s,
        base,
        tensors,
        lambda _, i, delta: _outliers_dropped(delta, s.densities[i], s.gammas[i], s.rescale),
        consensus,
    )


def breadcrumbs(s: Settings, base: Any, tensors: list[Any]) -> Any:
    """Model Breadcrumbs: deltas without their largest and smallest entries, then added."""
    return _breadcrumbs(s, base, tensors, consensus=False)


def breadcrumbs_ties(s: Settings, base: Any, tensors: list[Any]) -> Any:
    """Model Breadcrumbs' mask, then TIES' sign election."""
    return _breadcrumbs(s, base, tensors, consensus=True)


def _della(s: Settings, base: Any, tensors: list[Any], consensus: bool) -> Any:
    import torch

    if s.seed is None:
        raise ValueError("a DELLA merge is recomputed from its seed; none was recorded")
    torch.manual_seed(tensor_seed(s.seed, s.name))
    return _sparsified(
        s,
        base,
        tensors,
        lambda t, i, delta: _magnitude_pruned(delta, s.densities[i], s.epsilons[i], s.rescale, t.dtype),
        consensus,
    )


def della(s: Settings, base: Any, tensors: list[Any]) -> Any:
    """DELLA: deltas pruned at random by magnitude rank, then TIES' sign election."""
    return _della(s, base, tensors, consensus=True)


def della_linear(s: Settings, base: Any, tensors: list[Any]) -> Any:
    """DELLA's random pruning, then task arithmetic."""
    return _della(s, base, tensors, consensus=False)


def model_stock(s: Settings, base: Any, tensors: list[Any]) -> Any:
    """Model Stock (arXiv 2403.19522): the base moved toward the models' average by
    t = N cos / (1 + (N - 1) cos), cos the mean cosine between the models' deltas (per row when
    ``filter_wise``); t = 0 where the denominator vanishes."""
    import torch

    def rows(x: Any) -> Any:
        x = x.double()
        return x.reshape(1, -1) if x.dim() < 2 or not s.filter_wise else x

    start = rows(base)
    deltas = [rows(t) - start for t in tensors]
    cosines = [
        ((a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-6)).clamp(-1, 1)
        for i, a in enumerate(deltas)
        for b in deltas[i + 1 :]
    ]
    cos = torch.stack(cosines).mean(0).unsqueeze(-1)
    n = len(tensors)
    denominator = 1 + (n - 1) * cos
    singular = denominator.abs() < 1e-6
    t = torch.where(singular, 0.0, n * cos / torch.where(singular, 1.0, denominator))
    average = sum(rows(x) for x in tensors) / n
    return (t * average + (1 - t) * start).reshape(base.shape).float()


def passthrough(s: Settings, base: Any, tensors: list[Any]) -> Any:
    """The one input's tensor (a slice's layer), times ``scale`` when set."""
    (only,) = tensors
    return only.float() if s.scale is None else only.float() * s.scale


def dare_ties(s: Settings, base: Any, tensors: list[Any]) -> Any:
    """DARE's random drop and rescale, then TIES' sign election."""
    return _dare(s, base, tensors, consensus=True)


def dare_linear(s: Settings, base: Any, tensors: list[Any]) -> Any:
    """DARE's random drop and rescale, then task arithmetic."""
    return _dare(s, base, tensors, consensus=False)


def slerp(s: Settings, base: Any, tensors: list[Any]) -> Any:
    """Spherical interpolation from the base (t=0) to the other model (t=1), over the whole
    tensor as one vector; nearly parallel tensors are interpolated linearly."""
    import torch

    (other,) = tensors
    a, b = base.double().flatten(), other.double().flatten()
    dot = float(torch.dot(a / a.norm().clamp_min(1e-8), b / b.norm().clamp_min(1e-8)).clamp(-1, 1))
    if abs(dot) > 0.9995:
        out = (1 - s.t) * a + s.t * b
    else:
        theta = torch.tensor(dot, dtype=torch.float64).acos()
        out = (torch.sin((1 - s.t) * theta) * a + torch.sin(s.t * theta) * b) / torch.sin(theta)
    return out.reshape(base.shape).float()
