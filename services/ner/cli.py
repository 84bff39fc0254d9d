"""`mofi ner vectors`: encode every entity text of a knowledge base once and store the table beside it.

Run it after `mofi data build` (and whenever the knowledge base changes); NER processes then load the
table instead of encoding entity texts on demand (see mofi_platform.services.common.entity_vectors).
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
    """Encode every entity's "name: description" and write the table beside the knowledge base.

    A table that already holds every text of the knowledge base is kept (rerunning is instant).
    """
    from mofi.kb import KnowledgeBase
    from mofi.objstore import ObjectStore, join_uri
    from mofi_platform.services.common.entity_vectors import EntityVectors, default_encoder_path, kb_path, vectors_path
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
    existing = EntityVectors.load(out) if out.is_file() else None
    if existing is not None and None not in existing.rows(texts):
        click.echo(f"{out} is up to date ({len(existing)} entity vectors)")
    else:
        table = _build(texts, encoder_path, workers)
        table.save(out)
        click.echo(f"{len(table)} entity vectors ({table.dim}-d, {out.stat().st_size / 2**20:.0f} MiB) -> {out}")
    if copy_to:
        uri = join_uri(copy_to, out.name)
        ObjectStore(settings.s3).put_file(uri, out)
        click.echo(f"copied to {uri}")
    click.echo(f"took {time.monotonic() - started:.0f} s")


@ner.command("fetch")
@click.argument("kb_uri")
@click.option("--to", "dest", default=None, help="Local knowledge-base file (default: ner.kb_path).")
@click.pass_obj
def fetch(settings, kb_uri: str, dest: str | None) -> None:
    """Copy the knowledge base at KB_URI and the entity-vector table beside it to the local disk.

    A missing knowledge base fails (NER must not start without one); a missing table only warns, since
    NER then encodes entity texts on first use (slower, same links).
    """
    from mofi.objstore import ObjectStore
    from mofi_platform.services.common.entity_vectors import encoder_tag, vectors_path, vectors_uri

    dest = dest or settings.ner.kb_path
    if not dest:
        raise click.ClickException("no destination: pass --to or set ner.kb_path")
    store = ObjectStore(settings.s3)
    tag = encoder_tag(settings.ner.text_encoder)
    table_uri = vectors_uri(kb_uri, tag)
    for uri, path, required in ((kb_uri, Path(dest), True), (table_uri, vectors_path(dest, tag), False)):
        if not store.exists(uri):
            if required:
                raise click.ClickException(f"no knowledge base at {uri}")
            click.echo(f"warning: no entity-vector table at {uri}; NER will encode entity texts on first use", err=True)
            continue
        store.get_file(uri, path)
        click.echo(f"{uri} -> {path}")


def _build(texts: list[str], encoder_path: str, workers: int):
    """The table of ``texts``, encoded by ``workers`` spawned processes (this one when ``workers <= 1``)."""
    from tqdm import tqdm

    from mofi_platform.services.common.entity_vectors import EntityVectors

    assert _worker_encoder is not None
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
    return table
