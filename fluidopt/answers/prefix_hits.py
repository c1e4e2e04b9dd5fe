"""Prefix-cache hits between a run's requests: how many prompt tokens each found cached on arrival.

vLLM V1 caches KV blocks by content (automatic prefix caching, on by default): a request whose
prompt starts with blocks another request computed skips their prefill.  Token contents are not
in a run, so the hits come from what the run says, first of:

1. ``cached_prompt_tokens`` per request (measured, e.g. from vLLM's per-request metrics);
2. ``prefix_group`` per request: requests of one group are turns of one conversation, each
   prompt starting with the previous turn's prompt and output.  A turn finds that history cached
   if its group's blocks are still in the cache, an LRU over groups whose size is the engine's KV
   capacity (:func:`conversation_hits`);
3. ``prefix_cache_hit_rate`` in ``engine.toml`` (vLLM's logged hit rate): each prompt finds that
   share of its tokens cached, in whole blocks.

Hits count in whole blocks, and at least one prompt token is always computed (as in vLLM).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np


def conversation_hits(
    groups: np.ndarray, prompts: np.ndarray, outputs: np.ndarray, capacity_tokens: int, block: int
) -> np.ndarray:
    """Per request (in arrival order), the history tokens of its conversation found in the cache.

    The cache holds each group's last context (prompt plus output of its latest turn, in blocks);
    when a turn arrives its group moves to the most recently used end, and least recently used
    groups are dropped until the contexts fit in ``capacity_tokens``.  The running requests'
    share of the cache is not subtracted, so this is an upper bound on the hits.
    """
    cache: OrderedDict[Any, int] = OrderedDict()  # group -> cached context (tokens, whole blocks)
    held = 0
    hits = np.zeros(prompts.size, dtype=np.int64)
    for i, group in enumerate(groups):
        prompt = int(prompts[i])
        if group in cache:
            hits[i] = min(cache[group], (prompt - 1) // block * block)
            held -= cache.pop(group)
        context = (prompt + int(outputs[i])) // block * block
        cache[group] = context
        held += context
        while held > capacity_tokens and len(cache) > 1:
            _, dropped = cache.popitem(last=False)
            held -= dropped
    return hits


def rate_hits(prompts: np.ndarray, rate: float, block: int) -> np.ndarray:
    """``rate`` of each prompt cached, in whole blocks, leaving at least one token to compute."""
    tokens = np.floor(rate * prompts.astype(float)).astype(np.int64)
    return np.minimum(tokens, prompts - 1) // block * block


def prompt_hits(run: Any, capacity_tokens: int, block: int) -> np.ndarray | None:
    """Each request's cached prompt tokens (module docstring), or None when the run says none."""
    caching = run.kv_cache.get("enable_prefix_caching", run.engine_kwargs.get("enable_prefix_caching"))
    if caching is False:
        return None
    if run.cached_prompt_tokens is not None:
        return np.minimum(run.cached_prompt_tokens.astype(np.int64), run.prompt_tokens - 1)
    if run.prefix_group is not None:
        return conversation_hits(run.prefix_group, run.prompt_tokens, run.output_tokens, capacity_tokens, block)
    rate = run.kv_cache.get("prefix_cache_hit_rate")
    if rate:
        return rate_hits(run.prompt_tokens, float(rate), block)
    return None
