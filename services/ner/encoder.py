"""Sentence embeddings for linking context, from the offline MiniLM folder (mean pooling).

Why MiniLM: the alt-text as a whole says which sense of an ambiguous alias is meant ("a tiger in
the grass" vs. "a tiger on the football pitch"); cosine between the alt-text and each candidate's
"name: description" measures that, and MiniLM is small enough to run per alt-text on a CPU core.
"""

from __future__ import annotations

import threading

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from mofi_platform.services.common.entity_vectors import (
    MAX_TOKENS,
    STORED_DTYPE,
    EntityVectors,
    default_encoder_path,
    encoder_tag,
)

__all__ = ["TextEncoder", "plan_passes"]


def plan_passes(lengths: list[int], pass_cost_tokens: int, max_pass_tokens: int) -> list[list[int]]:
    """Split texts (by token count) into forward passes that cost the least CPU in total.

    Why: on one CPU core a MiniLM pass costs about a fixed ``pass_cost_tokens`` (streaming the
    weights through the cache, ~60 tokens' worth) plus one unit per padded token. Alt-texts are
    short (7-8 tokens on average) with a long tail, so fixed-size chunks either pad dozens of short
    texts to the longest one or pay the fixed cost too often. Over the texts sorted by length, a
    pass over ``i..j`` costs ``pass_cost_tokens + (j - i + 1) * lengths[j]``; dynamic programming
    finds the split with the least total, each pass holding at most ``max_pass_tokens`` padded
    tokens (memory). Returns the passes as lists of indices into ``lengths``.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    n = len(order)
    best = [0.0] + [float("inf")] * n  # best[j]: least cost of the first j sorted texts
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        longest = lengths[order[j - 1]]
        most = max(1, max_pass_tokens // max(longest, 1))
        for i in range(max(0, j - most), j):
            cost = best[i] + pass_cost_tokens + (j - i) * longest
            if cost < best[j]:
                best[j], cut[j] = cost, i
    passes: list[list[int]] = []
    j = n
    while j > 0:
        passes.append(order[cut[j] : j])
        j = cut[j]
    return passes[::-1]


class TextEncoder:
    """``encode(texts) -> float32 (n, dim)`` L2-normalised; ``encode_cached`` for entity texts, which come from
    a precomputed table (:attr:`table`, see :mod:`~mofi_platform.services.common.entity_vectors`) or are encoded
    once and remembered."""

    def __init__(
        self,
        path: str = "",
        max_tokens: int = MAX_TOKENS,
        cache_size: int = 200_000,
        pass_cost_tokens: int = 60,
        max_pass_tokens: int = 4096,
        threads: int = 1,
    ):
        path = path or default_encoder_path()
        self.tag = encoder_tag(path, max_tokens)
        self.table: EntityVectors | None = None
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.max_tokens = max_tokens
        self.pass_cost_tokens = pass_cost_tokens
        self.max_pass_tokens = max_pass_tokens
        self.threads = threads
        self.dim = int(self.model.config.hidden_size)
        self._cache: dict[str, np.ndarray] = {}
        self._cache_size = cache_size
        self._lock = threading.Lock()

    @torch.inference_mode()
    def _forward(self, texts: list[str]) -> np.ndarray:
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_tokens)["input_ids"]
        out = np.zeros((len(texts), self.dim), np.float32)
        for part in plan_passes([len(x) for x in ids], self.pass_cost_tokens, self.max_pass_tokens):
            batch = self.tokenizer.pad({"input_ids": [ids[i] for i in part]}, return_tensors="pt")
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[part] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out

    def _run(self, texts: list[str]) -> np.ndarray:
        """One intra-op thread by default: for these small matrices extra threads cost more than they
        give (and thrash on a busy node); scale with replicas or stage consumers instead. Processes
        that only run NER set it once (``mofi_platform.services.ner.app``); others get it per call."""
        previous = torch.get_num_threads()
        if previous == self.threads:  # resizing the thread pool costs more than a small batch
            return self._forward(texts)
        torch.set_num_threads(self.threads)
        try:
            return self._forward(texts)
        finally:
            torch.set_num_threads(previous)

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        with self._lock:
            return self._run(texts)

    def encode_cached(self, texts: list[str]) -> np.ndarray:
        """Like :meth:`encode` for entity texts: from :attr:`table` where it holds them, else encoded and
        remembered (entity texts repeat across alt-texts). Rounded to the table's precision either way."""
        with self._lock:
            found = {t: self._cache[t] for t in texts if t in self._cache}
            missing = [t for t in dict.fromkeys(texts) if t not in found]
            if missing and self.table is not None:
                rows = self.table.rows(missing)
                stored = [(t, r) for t, r in zip(missing, rows) if r is not None]
                if stored:
                    vectors = self.table.vectors[[r for _, r in stored]].astype(np.float32)
                    found.update(zip((t for t, _ in stored), vectors))
                    missing = [t for t, r in zip(missing, rows) if r is None]
            if missing:
                found.update(zip(missing, self._run(missing).astype(STORED_DTYPE).astype(np.float32)))
            new = [t for t in found if t not in self._cache]
            if len(self._cache) + len(new) > self._cache_size:
                self._cache.clear()
            self._cache.update((t, found[t]) for t in new)
            if not texts:
                return np.zeros((0, self.dim), np.float32)
            return np.stack([found[t] for t in texts])
