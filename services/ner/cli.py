"""`mofi ner vectors`: encode every entity text of a knowledge base once and store the table beside it.

Run it after `mofi data build` (and whenever the knowledge base changes); NER processes then load the
table instead of encoding entity texts on demand (see mofi_platform.services.ner.entity_vectors).
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import click
import numpy as np

__all__ = ["ner"]

_worker_encoder = None


def _start_worker(encoder_path: str) -> None:
    import torch

    from mofi_platform.services.ner.encoder import TextEncoder

    global _worker_encoder
    torch.set_num_threads(1)
    _worker_encoder = TextEncoder(encoder_path)


def _encode_part(texts: list[str]) -> np.ndarray:
    assert _worker_encoder is not None
    return _worker_encoder.encode(texts)


@click.group()
def ner() -> None:
    """NER and entity-linking tools."""


@ner.command("vectors")
@click.option("--kb", "kb_file", default=None, help="Knowledge base JSONL (default: ner.kb_path, else the built one).")
@click.option("--workers", default=2, show_default=True, help="Encoding processes (one torch thread each).")
@click.option("--copy-to", default=None, help="Also copy the table into this folder URI (s3://bucket/prefix).")
@click.pass_obj
def vectors(settings, kb_file: str | None, workers: int, copy_to: str | None) -> None:
    """Encode every entity's "name: description" and write the table beside the knowledge base."""
    from tqdm import tqdm

    from mofi.kb import KnowledgeBase
    from mofi.objstore import ObjectStore, join_uri
    from mofi_platform.services.ner.encoder import default_encoder_path
    from mofi_platform.services.ner.entity_vectors import EntityVectors, vectors_path
    from mofi_platform.services.ner.extractor import kb_path
    from mofi_platform.services.ner.linking import entity_text

    kb_file = kb_file or kb_path(settings)
    if not Path(kb_file).is_file():
        raise click.ClickException(f"no knowledge base at {kb_file} (run `mofi data build` first)")
    encoder_path = settings.ner.text_encoder or default_encoder_path()
    started = time.monotonic()
    texts = [entity_text(e) for e in KnowledgeBase.load(kb_file)]
    _start_worker(encoder_path)  # this process encodes too when workers == 1, and names the table
    assert _worker_encoder is not None
    out = vectors_path(kb_file, _worker_encoder.tag)
    with tqdm(total=len(dict.fromkeys(texts)), unit="text", desc="entity vectors") as bar:
        if workers <= 1:
            table = EntityVectors.build(texts, _worker_encoder.encode, batch=1024, progress=bar.update)
        else:
            ctx = get_context("spawn")
            with ProcessPoolExecutor(
                workers, mp_context=ctx, initializer=_start_worker, initargs=(encoder_path,)
            ) as pool:

                def encode(chunk: list[str]) -> np.ndarray:
                    parts = [chunk[i::workers] for i in range(workers)]
                    done = list(pool.map(_encode_part, parts))
                    result = np.empty((len(chunk), done[0].shape[1]), np.float32)
                    for i, part in enumerate(done):
                        result[i::workers] = part
                    return result

                table = EntityVectors.build(texts, encode, batch=1024 * workers, progress=bar.update)
    table.save(out)
    click.echo(f"{len(table)} entity vectors ({table.dim}-d, {out.stat().st_size / 2**20:.0f} MiB) -> {out}")
    if copy_to:
        uri = join_uri(copy_to, out.name)
        ObjectStore(settings.s3).put_file(uri, out)
        click.echo(f"copied to {uri}")
    click.echo(f"took {time.monotonic() - started:.0f} s")
