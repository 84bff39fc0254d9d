"""The scorer's entity-text embeddings, derived from the vectors NER already computed for the whole KB.

Why: on real traffic the scorer stage spent about a third of its CPU in its text tower, encoding the
"name: description" texts of candidate entities, texts whose MiniLM vectors NER's table already holds
(:mod:`mofi_platform.services.common.entity_vectors`). The LiT scorer's text tower is that frozen
MiniLM, mean-pooled, followed by a bias-free linear projection, and the scorer L2-normalises its
output. NER's vectors are the same mean-pooled MiniLM outputs, L2-normalised; since
``normalize(W @ (p / |p|)) == normalize(W @ p)``, the scorer's embedding of a text in the table is one
small matrix product.

When it is used: only for a model whose text tower passes :func:`projected_table`'s check (the
embeddings of sample texts agree with the model's own to within the table's float16 rounding), so a
retrained or differently built text tower simply encodes as before; and only for texts that both
paths tokenise alike: already whitespace-clean (the model's tokenizer cleans, NER's does not) and
short enough that neither truncates. Anything else goes through the model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from mofi_platform.services.common.entity_vectors import EntityVectors

__all__ = ["ProjectedTable", "projected_table", "CHECK_COSINE"]

log = logging.getLogger(__name__)

#: The least cosine between a table-derived and a model-computed embedding for the check to pass
#: (float16 storage alone leaves them above 0.9999).
CHECK_COSINE = 0.999


class ProjectedTable:
    """``lookup(texts) -> {text: embedding}`` for the texts it can serve (L2-normalised float32)."""

    def __init__(self, table: EntityVectors, projection: np.ndarray, tokenizer, max_tokens: int):
        self.table = table
        self.projection = projection.astype(np.float32)  # (out, in): the text tower's linear projection
        self.tokenizer = tokenizer  # open_clip HFTokenizer: .clean_fn and the Hugging Face .tokenizer
        self.max_tokens = max_tokens  # with special tokens: neither path truncates at or below this
        self.served = 0

    def _eligible(self, texts: Sequence[str]) -> list[bool]:
        clean = getattr(self.tokenizer, "clean_fn", None)
        ids = self.tokenizer.tokenizer(list(texts), truncation=False)["input_ids"]
        return [len(i) <= self.max_tokens and (clean is None or clean(t) == t) for t, i in zip(texts, ids)]

    def lookup(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        rows = self.table.rows(texts)
        candidates = [(t, r) for t, r in zip(texts, rows) if r is not None]
        if not candidates:
            return {}
        ok = self._eligible([t for t, _ in candidates])
        chosen = [(t, r) for (t, r), good in zip(candidates, ok) if good]
        if not chosen:
            return {}
        vectors = self.table.vectors[[r for _, r in chosen]].astype(np.float32) @ self.projection.T
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
        self.served += len(chosen)
        return {t: v for (t, _), v in zip(chosen, vectors)}


def projected_table(
    model, table: EntityVectors | None, table_max_tokens: int, sample_texts: Sequence[str]
) -> ProjectedTable | None:
    """A :class:`ProjectedTable` for ``model`` (an ``EmbeddingModel``), or None with the reason logged.

    The check embeds ``sample_texts`` (texts the table holds) both ways and requires every cosine to
    reach :data:`CHECK_COSINE`.
    """
    if table is None or len(table) == 0:
        return None
    text = getattr(getattr(model, "model", None), "text", None)
    proj = getattr(text, "proj", None)
    weight = getattr(proj, "weight", None)
    if weight is None or getattr(proj, "bias", None) is not None or weight.ndim != 2:
        log.info("scorer text tower has no bias-free linear projection: entity texts are encoded by the model")
        return None
    tokenizer = model.tokenizer
    while not hasattr(tokenizer, "context_length") and hasattr(tokenizer, "tokenizer"):
        tokenizer = tokenizer.tokenizer  # unwrap (e.g. the scorer's TrimmedTokenizer) to open_clip's HFTokenizer
    context = int(getattr(tokenizer, "context_length", 0) or 0)
    if not context or not hasattr(tokenizer, "tokenizer"):
        log.info("scorer tokenizer is not a Hugging Face one: entity texts are encoded by the model")
        return None
    candidate = ProjectedTable(table, weight.detach().cpu().numpy(), tokenizer, min(context, table_max_tokens))
    samples = list(candidate.lookup(list(sample_texts)).items())
    if not samples:
        log.info("no sample text to check the entity-vector table with: entity texts are encoded by the model")
        return None
    own = model.embed_texts([t for t, _ in samples])
    worst = float(min(float(np.dot(v, o)) for (_, v), o in zip(samples, own)))
    if worst < CHECK_COSINE:
        log.warning(
            "entity-vector table disagrees with the scorer's text tower (cosine %.4f < %.4f): not used",
            worst,
            CHECK_COSINE,
        )
        return None
    candidate.served = 0
    log.info("scorer entity texts from the table (%d texts; check cosine %.5f)", len(table), worst)
    return candidate
