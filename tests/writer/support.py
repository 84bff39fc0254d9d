"""Helpers for the scorer -> writer pipeline tests: inputs, stage processes and the final accounting."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaConsumer
from PIL import Image

from mofi.i2e import iter_shard, list_shards, read_manifest
from mofi.i2e.layout import no_entity_prefix
from mofi.kafka import DEAD_LETTER_REASON_HEADER
from mofi.objstore import ObjectStore
from mofi.settings import Settings
from mofi.v1 import records_pb2
from mofi_platform.services.scorer.drops import iter_no_entity

REPO = Path(__file__).resolve().parents[2]


def pair_id(source: str, path: str) -> str:
    return hashlib.sha1(f"{source}:{path}".encode()).hexdigest()[:16]


def png(i: int, size: tuple[int, int] = (40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)).save(buf, format="PNG")
    return buf.getvalue()


ENTITIES = [
    ("wn:02129604", "tiger", "large feline of forests in most of Asia"),
    ("geo:2988507", "Paris", "capital and largest city of France"),
    ("wn:03141065", "sailboat", "a small sailing vessel"),
    ("emoji:1F600", "grinning face", "a smiling face emoji"),
]


def candidate_pair(i: int, n_candidates: int = 2) -> records_pb2.CandidatePair:
    path = f"synthetic/{i:04d}.png"
    pid = pair_id("synthetic", path)
    pair = records_pb2.Pair(
        pair_id=pid,
        text=f"photo {i} of a tiger in Paris",
        source="synthetic",
        licence="CC0",
        original_path=path,
        image_mime="image/png",
        image_bytes=png(i),
        schema="mofi.pair.v1",
    )
    cands = [
        records_pb2.EntityCandidate(
            entity_id=eid, name=name, description=desc, link_score=0.8, method="alias", mention_index=0
        )
        for eid, name, desc in (ENTITIES[(i + k) % len(ENTITIES)] for k in range(n_candidates))
    ]
    return records_pb2.CandidatePair(pair=pair, candidates=cands)


def bad_candidate_records() -> dict[bytes, bytes]:
    """key -> value of records the scorer must dead-letter."""
    broken = candidate_pair(9000)
    broken.pair.image_bytes = b"\x89PNG\r\n\x1a\n truncated"
    no_image = candidate_pair(9001)
    no_image.pair.ClearField("image_bytes")
    svg_named_png = candidate_pair(9002)  # declared mime disagrees with the bytes
    svg_named_png.pair.image_mime = "image/svg+xml"
    jpeg_named_png = candidate_pair(9003)
    jpeg_named_png.pair.image_mime = "image/jpeg"
    endless = candidate_pair(9004)  # a candidate text over the scorer's length limit
    endless.candidates[0].description = "x" * 100_000
    return {
        b"garbage": b"\x08\xff\xff\xff",
        **{
            c.pair.pair_id.encode(): c.SerializeToString()
            for c in (broken, no_image, svg_named_png, jpeg_named_png, endless)
        },
    }


def stage_process(settings: Settings, name: str, log: Path) -> subprocess.Popen:
    """``services.<name>.app:stage_main`` in its own process, configured through MOFI_* variables."""
    env = {**os.environ, **settings.to_env(), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    code = (
        f"from mofi.settings import load_settings; from mofi_platform.services.{name}.app import stage_main; "
        "stage_main(load_settings())"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def stop(proc: subprocess.Popen, timeout: float = 30) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=timeout)


@dataclass
class Accounting:
    """Where every pair ended: shards (with multiplicity), dead letters, no-entity drops."""

    shard_ids: list[str]
    dead_letters: dict[str, str]
    no_entity: set[str]

    def accounted(self) -> set[str]:
        return set(self.shard_ids) | set(self.dead_letters) | self.no_entity


def dead_letters(settings: Settings, timeout_ms: int = 3000) -> dict[str, str]:
    c = KafkaConsumer(
        settings.kafka.dead_letter_topic,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=timeout_ms,
        enable_auto_commit=False,
    )
    out = {m.key.decode(errors="replace"): dict(m.headers)[DEAD_LETTER_REASON_HEADER].decode() for m in c}
    c.close()
    return out


def account(settings: Settings, store: ObjectStore) -> Accounting:
    prefix = f"s3://{settings.s3.i2e_bucket}/{settings.writer.prefix}"
    ids = [s.pair_id for uri in list_shards(store, prefix) for s in iter_shard(store, uri, verify=True)]
    return Accounting(
        ids, dead_letters(settings), {d["pair_id"] for d in iter_no_entity(store, settings.s3.i2e_bucket)}
    )


def visible_pairs(settings: Settings, store: ObjectStore) -> list[str]:
    """Pair ids in complete shards (from manifests, with multiplicity) plus no-entity drops: cheap to poll."""
    prefix = f"s3://{settings.s3.i2e_bucket}/{settings.writer.prefix}"
    ids = [p for uri in list_shards(store, prefix) for p in read_manifest(store, uri)["pair_ids"]]
    drops = [
        uri.rsplit("/", 1)[1].removesuffix(".json") for uri in store.list(no_entity_prefix(settings.s3.i2e_bucket))
    ]
    return ids + drops
