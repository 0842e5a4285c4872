"""lm-eval's Hugging Face model, scoring each multiple-choice context with one forward pass.

A multiple-choice task sends lm-eval one loglikelihood request per choice, all with the same
context: ARC 25-shot, HellaSwag 10-shot, MMLU 5-shot (four letters) and TruthfulQA mc2 (~8
answers). lm-eval's ``HFLM`` runs context + continuation through the model for every request
(its logits cache shares a pass only between continuations that differ in their last token
alone). ``SharedContextHFLM`` runs a shared context once with ``use_cache=True``, then all of its
continuations as one right-padded batch on that key/value cache, and returns what ``HFLM``
returns: the sum of the continuation's log-probabilities and whether greedy decoding would
produce it. The sums are equal up to float rounding (the matmul shapes differ); the context's
tokens go through the model once instead of once per choice. A context cut to the model's window
is shared by the choices whose continuations are equally long (the cut depends on that length).

Contexts also share their beginnings: the task description and, with a ``first_n`` sampler
(hubkit's MMLU), the same few-shot examples for every question of a subject. Groups run in token order and,
where the next context shares at least half of itself with the previous one, the previous cache
is cut back to that prefix and only the rest runs (measured on the tiny model: sharing less, the
masked attention on a cache costs more than it saves: ARC's random shots ran 1.6x slower).
Generation on a CPU uses a static key/value cache: a dynamic one copies the whole cache at every
new token (~38 MB a step for a batch of 16 GSM8K prompts on the tiny test model: 128 tokens took
2.5 s on it, 1.9 s on a static one), and on a CPU a static cache does not trigger ``torch.compile``.

Memory: the cache of one context, repeated once per choice for the continuation batch, is what
``HFLM`` holds for a batch of that many full requests (on a 7B model in fp16, ~0.5 MiB per token
per choice); only the continuation positions' logits are kept, not the whole window's.
"""

from __future__ import annotations

import logging
import warnings
from collections import defaultdict
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

# lm-eval's import adds its dependencies' warning filters; importing a hubkit module changes none.
with warnings.catch_warnings():
    from lm_eval.models.huggingface import HFLM

logger = logging.getLogger(__name__)

Request = tuple[tuple[str, str] | None, list[int], list[int]]


def _cut(cache: Any, length: int) -> None:
    """Keep the first ``length`` positions of ``cache`` (``crop`` takes how many to remove)."""
    cache.crop(length - cache.get_seq_length())


class SharedContextHFLM(HFLM):
    """``HFLM`` whose loglikelihood requests sharing a context run that context once.

    Requests that share no context with another, a seq2seq model and prompt-learning adapters
    (whose virtual tokens the cache would not hold) go to ``HFLM`` unchanged.
    """

    _prefix: tuple[list[int], Any] = ([], None)  # the last context run, and its cache

    def _loglikelihood_tokens(
        self,
        requests: list[Request],
        disable_tqdm: bool = False,
        override_bs: int | None = None,
    ) -> list[tuple[float, bool]]:
        groups = self._shared_context_groups(requests)
        shared = {i for group in groups for i in group}
        rest = [i for i in range(len(requests)) if i not in shared]
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        if rest:
            answers = super()._loglikelihood_tokens(
                [requests[i] for i in rest], disable_tqdm=disable_tqdm, override_bs=override_bs
            )
            for i, answer in zip(rest, answers, strict=True):
                results[i] = answer
        if groups:
            pbar = tqdm(
                total=len(shared),
                disable=disable_tqdm or self.rank != 0,
                desc="Running loglikelihood requests (shared contexts)",
            )
            for group in sorted(groups, key=lambda g: self._window(requests[g[0]])):
                for i, answer in zip(group, self._score_group([requests[i] for i in group]), strict=True):
                    results[i] = answer
                    if requests[i][0] is not None:
                        self.cache_hook.add_partial("loglikelihood", requests[i][0], answer)
                    pbar.update(1)
            pbar.close()
            self._prefix = ([], None)
        return results  # type: ignore[return-value]

    def _window(self, request: Request) -> list[int]:
        """The context tokens ``HFLM`` feeds before ``request``'s continuation."""
        _, context, continuation = request
        return context[-(self.max_length + 1 - len(continuation)) :]

    def _run_context(self, window: list[int]) -> Any:
        """The model's output on ``window`` (with its cache), running only what the previous
        context does not share when that is at most half of it: its cache is cut back to the
        common prefix."""
        last, cache = self._prefix
        limit = min(len(last), len(window) - 1)  # at least one token runs: its logits are needed
        common = next((k for k in range(limit) if last[k] != window[k]), limit)
        # On a cache the attention takes an explicit mask instead of the causal kernel, which costs
        # about what half a window saves: below that the whole window runs again.
        if cache is None or 2 * common < len(window):
            out = self.model(torch.tensor([window], device=self.device), use_cache=True)
        else:
            _cut(cache, common)
            out = self.model(torch.tensor([window[common:]], device=self.device), cache=cache, use_cache=True)
        self._prefix = (window, out.cache)
        return out

    def _model_generate(self, context, max_length: int, stop: list[str], **generation_kwargs):
        if self.device.type == "cpu" and getattr(self.model, "_can_compile_fullgraph", False):
            generation_kwargs.setdefault("cache_implementation", "static")
        return super()._model_generate(context, max_length, stop, **generation_kwargs)

    def _shared_context_groups(self, requests: list[Request]) -> list[list[int]]:
        """Indices of the requests whose model input starts with the same context, >1 per group.

        ``HFLM`` feeds ``(context + continuation)[-(max_length + 1):][:-1]``: the last
        ``max_length + 1 - len(continuation)`` context tokens, then the continuation. Requests with
        equal such windows (a whole context, or a truncated one with equally long continuations)
        share the pass.
        """
        peft_config = getattr(self.model, "active_peft_config", None)
        if self.backend != "causal" or getattr(peft_config, "is_prompt_learning", False):
            return []
        by_window: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, (_, context, continuation) in enumerate(requests):
            if context and 0 < len(continuation) <= self.max_length:  # else HFLM's own checks speak
                by_window[tuple(self._window(requests[i]))].append(i)
        return [group for group in by_window.values() if len(group) > 1]

    def _score_group(self, requests: list[Request]) -> list[tuple[float, bool]]:
        """(sum of log-probs, greedy) per request of one group: the context once, then the
        continuations but their last token as one right-padded batch on its cache."""
        _, context, _ = requests[0]
        window = self._window(requests[0])
        if len(window) < len(context):
            logger.warning(
                "Context of %d tokens + continuations exceed the model's maximum length (%d): "
                "scoring the last %d context tokens, as lm-eval does",
                len(context), self.max_length, len(window),
            )  # fmt: skip
        continuations = [continuation for _, _, continuation in requests]
        longest = max(len(c) for c in continuations) - 1
        with (
            torch.no_grad(),
            torch.autocast(
                device_type=self.device.type,
                dtype=self.mixed_precision_dtype,
                enabled=self.mixed_precision_dtype is not None,
            ),
        ):
            out = self._run_context(window)
            # The context's last position predicts every continuation's first token.
            head = F.log_softmax(out.logits[:, -1:], dim=-1, dtype=self.softmax_dtype)  # [1, 1, vocab]
            if longest:
                cache = out.cache
                cache.batch_repeat_interleave(len(continuations))
                # Right padding: causal attention keeps the padded tail out of every real position.
                inputs = [c[:-1] + [c[0]] * (longest - len(c) + 1) for c in continuations]
                tail = F.log_softmax(
                    self.model(torch.tensor(inputs, device=self.device), cache=cache).logits,
                    dim=-1,
                    dtype=self.softmax_dtype,
                )  # [choices, longest, vocab]
                # Back to the context alone, for the next context that shares its beginning.
                _cut(cache, len(window))
                cache.batch_select_indices(torch.tensor([0], device=self.device))
        answers = []
        for row, continuation in enumerate(continuations):
            logprobs = head[0]
            if len(continuation) > 1:
                logprobs = torch.cat([logprobs, tail[row, : len(continuation) - 1]])
            target = torch.tensor(continuation, device=logprobs.device)
            greedy = bool((logprobs.argmax(dim=-1) == target).all())
            answers.append((float(logprobs.gather(1, target.unsqueeze(1)).sum()), greedy))
        return answers
