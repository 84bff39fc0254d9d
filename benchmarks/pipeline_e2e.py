"""End-to-end I2E construction: pairs/s through Kafka -> NER -> scorer -> writer, versus the floor.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/pipeline_e2e.py --corpus URI --checkpoint URI \\
        [--kb PATH] [--pairs 400]

The floor is the same models called in-process in one loop (NER extract -> CLIP scoring ->
threshold -> shard writes to S3, batches of ``kafka.max_poll_records``), i.e. what the pipeline
would do with no broker, no serialization hops and no processes. The pipeline runs on a private
local stack (Tansu broker on SeaweedFS S3, free loopback ports) with the three stages as
separate processes (`mofi stage ner|scorer|writer`), already started and warmed up; the clock runs
from the first produced pair until every pair is accounted for (I2E shard, no-entity record or
dead letter). Reported: both rates and pipeline/floor. The floor runs one torch thread, as each
stage process does; the 1-minute load average before and after says how busy the machine was.

Rates on a shared machine move with everyone else's load, so CPU time is reported too: the CPU
seconds per pair of the floor process and of each stage process over the timed window (Linux
/proc), which is what the work costs whoever else runs.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from kafka import KafkaConsumer  # noqa: E402

from mofi.i2e import list_shards, read_manifest, write_shard  # noqa: E402
from mofi.i2e.records import record_to_sample  # noqa: E402
from mofi.kafka import ensure_topics, make_producer  # noqa: E402
from mofi.objstore import ObjectStore  # noqa: E402
from mofi.settings import S3Settings, Settings  # noqa: E402
from mofi.stack import Stack, free_stack_ports  # noqa: E402
from mofi.v1 import records_pb2  # noqa: E402
from mofi_platform.databuild.corpus import iter_corpus  # noqa: E402
from mofi_platform.databuild.fixtures import fixture_kb_path  # noqa: E402
from mofi_platform.services.ner.extractor import Extractor  # noqa: E402
from mofi_platform.services.ner.service import to_proto  # noqa: E402
from mofi_platform.services.scorer.app import load_model  # noqa: E402
from mofi_platform.services.scorer.candidates import CandidateScorer, Kind  # noqa: E402
from mofi_platform.services.scorer.drops import count_no_entity, record_no_entity_many  # noqa: E402
from mofi_platform.services.scorer.scoring import ClipScorer  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def corpus_pairs(corpus: str, n: int) -> list[records_pb2.Pair]:
    out = []
    for s in iter_corpus(ObjectStore(S3Settings()), corpus):
        out.append(
            records_pb2.Pair(
                pair_id=s.pair_id,
                text=s.text,
                source=s.source,
                licence=s.licence,
                original_path=s.original_path,
                image_mime=s.mime,
                image_bytes=s.image_bytes,
                schema="mofi.pair.v1",
            )
        )
        if len(out) == n:
            break
    return out


def stack_settings(root: Path, broker_storage: str) -> Settings:
    s = Settings.for_local_stack(root, broker_storage=broker_storage, **free_stack_ports())
    s.kafka.session_timeout_ms = 6000
    s.kafka.partitions = 2
    s.writer.shard_size = 64
    s.writer.flush_interval_s = 1.0
    return s


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (Linux /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def floor(
    settings: Settings, extractor: Extractor, scorer: ClipScorer, pairs, store: ObjectStore
) -> tuple[float, float]:
    """The same work in one process and one loop; returns (pairs/s, CPU seconds per pair)."""
    core = CandidateScorer(
        scorer, settings.scorer.threshold, store.get_bytes, settings.scorer.max_image_bytes, settings.data.max_pixels
    )
    batch, shard, shards = settings.kafka.max_poll_records, [], 0
    prefix = f"s3://{settings.s3.i2e_bucket}/floor"
    start, cpu0 = time.perf_counter(), time.process_time()
    for i in range(0, len(pairs), batch):
        chunk = pairs[i : i + batch]
        extractions = extractor.extract([p.text for p in chunk])
        values = []
        for p, ex in zip(chunk, extractions):
            mentions, cands = to_proto(ex)
            values.append(records_pb2.CandidatePair(pair=p, mentions=mentions, candidates=cands).SerializeToString())
        verdicts = core.process(values)
        record_no_entity_many(store, settings.s3.i2e_bucket, [v.record for v in verdicts if v.kind is Kind.NO_ENTITY])
        for v in verdicts:
            if v.kind is Kind.I2E:
                shard.append(record_to_sample(v.record, store.get_bytes))
            if len(shard) >= settings.writer.shard_size:
                write_shard(store, f"{prefix}/{shards:06d}.tar", shard)
                shard, shards = [], shards + 1
    if shard:
        write_shard(store, f"{prefix}/{shards:06d}.tar", shard)
    return len(pairs) / (time.perf_counter() - start), (time.process_time() - cpu0) / len(pairs)


class DeadLetterCount:
    """Counts dead letters in the background (the third place a pair can end)."""

    def __init__(self, settings: Settings):
        self.n = 0
        self._stop = threading.Event()
        self._consumer = KafkaConsumer(
            settings.kafka.dead_letter_topic,
            bootstrap_servers=settings.kafka.bootstrap_servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for part in self._consumer.poll(timeout_ms=200).values():
                self.n += len(part)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._consumer.close()


def accounted(settings: Settings, store: ObjectStore, dead: DeadLetterCount) -> int:
    prefix = f"s3://{settings.s3.i2e_bucket}/{settings.writer.prefix}"
    in_shards = sum(read_manifest(store, u)["count"] for u in list_shards(store, prefix))
    dropped = count_no_entity(store, settings.s3.i2e_bucket)
    return in_shards + dropped + dead.n


STAGES = ("ner", "scorer", "writer")


def pipeline(settings: Settings, pairs, warmup, store: ObjectStore, logs: Path) -> tuple[float, dict[str, float]]:
    """(pairs/s, CPU seconds per pair of each stage process) over the timed window."""
    env = {**os.environ, **settings.to_env()}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "mofi.cli", "stage", name],
            cwd=REPO,
            env=env,
            stdout=open(logs / f"{name}.log", "wb"),  # noqa: SIM115 (open for the process lifetime)
            stderr=subprocess.STDOUT,
        )
        for name in STAGES
    ]
    ensure_topics(
        settings.kafka,
        [
            settings.kafka.pairs_topic,
            settings.kafka.candidates_topic,
            settings.kafka.i2e_topic,
            settings.kafka.dead_letter_topic,
        ],
    )
    dead = DeadLetterCount(settings)
    prod = make_producer(settings.kafka)
    try:

        def send(batch):
            for p in batch:
                prod.send(settings.kafka.pairs_topic, key=p.pair_id.encode(), value=p.SerializeToString())
            prod.flush()

        def wait_for(total: int, timeout: float) -> None:
            deadline = time.monotonic() + timeout
            while accounted(settings, store, dead) < total:
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    raise RuntimeError(f"pipeline stalled; see {logs}")
                time.sleep(0.2)

        send(warmup)
        wait_for(len(warmup), 600)  # stages started, models loaded, groups joined
        start, cpu0 = time.perf_counter(), [cpu_seconds(p.pid) for p in procs]
        send(pairs)
        wait_for(len(warmup) + len(pairs), 1800)
        rate = len(pairs) / (time.perf_counter() - start)
        cpu = {name: round((cpu_seconds(p.pid) - c0) / len(pairs), 4) for name, p, c0 in zip(STAGES, procs, cpu0)}
        return rate, cpu
    finally:
        prod.close()
        dead.close()
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", required=True, help="Corpus shard prefix (local folder or s3:// URI).")
    ap.add_argument("--checkpoint", required=True, help="Scorer checkpoint (local path or s3:// URI).")
    ap.add_argument("--kb", default=str(fixture_kb_path()), help="Knowledge base JSONL for NER.")
    ap.add_argument("--pairs", type=int, default=400)
    ap.add_argument("--warmup", type=int, default=16)
    ap.add_argument("--threshold", type=float, default=None, help="Scorer threshold (default: settings).")
    ap.add_argument(
        "--broker-storage",
        choices=["s3", "memory"],
        default="s3",
        help="Broker log in the S3 server (durable, the default stack) or in memory.",
    )
    args = ap.parse_args()
    torch.set_num_threads(1)  # as the NER and scorer stage processes run
    load_before = os.getloadavg()[0]

    all_pairs = corpus_pairs(args.corpus, args.pairs + args.warmup)
    warmup, pairs = all_pairs[: args.warmup], all_pairs[args.warmup :]
    root = Path(tempfile.mkdtemp(prefix="mofi-bench-"))
    settings = stack_settings(root, args.broker_storage)
    settings.ner.kb_path = args.kb
    settings.scorer.checkpoint = (
        str(Path(args.checkpoint).resolve()) if "://" not in args.checkpoint else args.checkpoint
    )
    if args.threshold is not None:
        settings.scorer.threshold = args.threshold
    stack = Stack(settings)
    stack.up()
    try:
        store = ObjectStore(settings.s3)
        extractor = Extractor.from_settings(settings)
        scorer = ClipScorer(load_model(settings))
        extractor.extract([p.text for p in warmup])
        floor_settings = copy.deepcopy(settings)
        floor_settings.s3.i2e_bucket = "mofi-i2e-floor"  # keeps its no-entity records out of the pipeline's count
        floor_rate, floor_cpu = floor(floor_settings, extractor, scorer, pairs, store)
        del extractor, scorer  # free the cores' memory for the stage processes
        pipe_rate, stage_cpu = pipeline(settings, pairs, warmup, store, root)
    finally:
        stack.down()
    print(
        json.dumps(
            {
                "pairs": len(pairs),
                "broker_storage": args.broker_storage,
                "corpus": args.corpus,
                "kb": args.kb,
                "threshold": settings.scorer.threshold,
                "floor_pairs_per_s": round(floor_rate, 2),
                "pipeline_pairs_per_s": round(pipe_rate, 2),
                "pipeline_over_floor": round(pipe_rate / floor_rate, 3),
                "cpu_count": os.cpu_count(),
                "floor_cpu_s_per_pair": round(floor_cpu, 4),
                "stage_cpu_s_per_pair": stage_cpu,
                "pipeline_cpu_s_per_pair": round(sum(stage_cpu.values()), 4),
                "load_average_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
