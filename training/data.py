"""Streaming a snapshot's I2E shards into training batches, without downloading the dataset first.

Each DataLoader worker of each DDP rank reads its own part of the snapshot, one shard object at a
time, straight from the object store:

- with at least as many shards as (ranks x workers), whole shards are dealt out round-robin;
- with fewer (small snapshots, tests), every worker reads every shard and keeps every G-th sample,
  so no rank ever sits idle and no sample is seen twice in an epoch.

The stream is endless (epoch after epoch, reshuffled by a per-epoch seed): training is counted in
steps, so ranks never run out of data at different times and DDP never waits on a finished rank.
Within an epoch a shuffle buffer mixes samples across the shard boundaries.

A sample yields the transformed image, the indices of its entities that are in the snapshot's class
table (CosFace targets), and the text for the contrastive loss: the entity text
``"name: description"`` (or the name alone, ``entity_text="name"``) of one of its entities, picked at
random each time (MOFI's entity text), or the raw alt-text for the CLIP-style baseline. Undecodable
images are skipped and logged by pair id.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from mofi.i2e import I2ESample, Snapshot, iter_shard
from mofi.images import ImageRejected, decode_rgb
from mofi.objstore import ObjectStore
from mofi.settings import S3Settings

__all__ = ["entity_text", "StreamConfig", "sample_labels", "I2EStream", "Collate", "make_loader"]

log = logging.getLogger(__name__)


def entity_text(name: str, description: str) -> str:
    """MOFI's enriched entity text: the name, then the knowledge-base description."""
    return f"{name}: {description}" if description else name


@dataclass(frozen=True)
class StreamConfig:
    split: str = "train"
    text_source: str = "entity"  # "entity" | "alt_text" | "none"
    entity_text: str = "name_description"  # of an "entity" text: "name_description" | "name"
    require_class: bool = True  # skip images with no entity in the class table
    shuffle_buffer: int = 256
    seed: int = 0
    max_pixels: int = 40_000_000


def sample_labels(
    sample: I2ESample, class_index: dict[str, int], cfg: StreamConfig
) -> tuple[list[int], list[str]] | None:
    """A sample's class indices and the texts its contrastive side may pick from (one per step, at
    random); None when the sample lacks what the config requires. Shared by the stream and the
    feature cache (``mofi_platform.training.feature_cache``), so both train on the same labels."""
    entities = sample.meta.get("entities", [])
    classes = sorted({class_index[e["id"]] for e in entities if e["id"] in class_index})
    if cfg.require_class and not classes:
        return None
    texts: list[str] = []
    if cfg.text_source == "entity":
        pool = [e for e in entities if e["id"] in class_index] or entities
        with_description = cfg.entity_text == "name_description"
        texts = [entity_text(e["name"], e.get("description", "") if with_description else "") for e in pool]
    elif cfg.text_source == "alt_text":
        texts = [t for t in [sample.meta.get("text", "")] if t]
    if cfg.text_source != "none" and not texts:
        return None
    return classes, texts


class I2EStream(IterableDataset):
    """Endless stream of ``{"image", "classes", "text", "pair_id"}`` for one rank."""

    def __init__(
        self,
        s3: S3Settings,
        snapshot: Snapshot,
        transform: Callable[[Image.Image], torch.Tensor],
        cfg: StreamConfig = StreamConfig(),
        rank: int = 0,
        world_size: int = 1,
    ):
        if not snapshot.shards:
            raise ValueError(f"snapshot {snapshot.version} has no shards")
        self.s3 = s3
        self.snapshot = snapshot
        self.transform = transform
        self.cfg = cfg
        self.rank = rank
        self.world_size = world_size
        self.class_index = snapshot.class_index()

    def _slot(self) -> tuple[int, int]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        return self.rank * workers + worker, self.world_size * workers

    def _samples(self, store: ObjectStore, epoch: int, slot: int, slots: int) -> Iterator[I2ESample]:
        shards = list(self.snapshot.shards)
        random.Random(self.cfg.seed * 1_000_003 + epoch).shuffle(shards)
        if len(shards) >= slots:
            for uri in shards[slot::slots]:
                yield from iter_shard(store, uri)
            return
        n = 0
        for uri in shards:
            for sample in iter_shard(store, uri):
                if n % slots == slot:
                    yield sample
                n += 1

    def _example(self, sample: I2ESample, rng: random.Random) -> dict[str, Any] | None:
        if self.snapshot.split_of(sample.pair_id) != self.cfg.split:
            return None
        labels = sample_labels(sample, self.class_index, self.cfg)
        if labels is None:
            return None
        classes, texts = labels
        text = rng.choice(texts) if texts else ""
        try:
            image = decode_rgb(sample.image_bytes, max_pixels=self.cfg.max_pixels)
        except ImageRejected as e:
            log.warning("skipping pair %s: %s", sample.pair_id, e)
            return None
        return {"image": self.transform(image), "classes": classes, "text": text, "pair_id": sample.pair_id}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        store = ObjectStore(self.s3)  # per worker process: clients are not shared across forks
        slot, slots = self._slot()
        rng = random.Random(f"{self.cfg.seed}/{slot}")
        buffer: list[dict[str, Any]] = []
        epoch = 0
        while True:
            produced = 0
            for sample in self._samples(store, epoch, slot, slots):
                example = self._example(sample, rng)
                if example is None:
                    continue
                produced += 1
                if len(buffer) < self.cfg.shuffle_buffer:
                    buffer.append(example)
                    continue
                i = rng.randrange(len(buffer))
                buffer[i], example = example, buffer[i]
                yield example
            if produced == 0:  # filtering is deterministic: every later epoch would be empty too
                raise RuntimeError(
                    f"snapshot {self.snapshot.version}: no {self.cfg.split} samples for rank {self.rank} "
                    f"(slot {slot} of {slots}); use fewer ranks/workers or a larger snapshot"
                )
            rng.shuffle(buffer)
            while len(buffer) > min(self.cfg.shuffle_buffer, produced) // 2:
                yield buffer.pop()
            epoch += 1


class Collate:
    """Stacks images, builds (B, C) multi-hot targets and tokenises texts."""

    def __init__(self, num_classes: int, tokenizer: Callable[[list[str]], torch.Tensor] | None):
        self.num_classes = num_classes
        self.tokenizer = tokenizer

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "images": torch.stack([b["image"] for b in batch]),
            "pair_ids": [b["pair_id"] for b in batch],
            "targets": None,
            "texts": None,
        }
        if self.num_classes:
            targets = torch.zeros(len(batch), self.num_classes, dtype=torch.bool)
            for row, b in enumerate(batch):
                targets[row, b["classes"]] = True
            out["targets"] = targets
        if self.tokenizer is not None:
            out["texts"] = self.tokenizer([b["text"] for b in batch])
        return out


def make_loader(stream: I2EStream, batch_size: int, collate: Collate, num_workers: int = 0) -> DataLoader:
    return DataLoader(
        stream,
        batch_size=batch_size,
        collate_fn=collate,
        num_workers=num_workers,
        drop_last=True,  # equal batches on every rank: the contrastive gather needs them
        persistent_workers=num_workers > 0,
    )
