"""End-to-end I2E construction on the real corpus: produce -> NER -> scorer -> writer, against the floor.

    make bench B=pipeline_e2e ARGS="--corpus .mofi/data/shards/ --checkpoint PATH"
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/pipeline_e2e.py --corpus URI --checkpoint URI \\
        [--kb PATH] [--pairs 0] [--runs 1] [--threshold T]

The **pipeline** is the three stages as separate processes (`mofi stage ner|scorer|writer`) on a
private local stack (Tansu broker on SeaweedFS S3, free loopback ports, 2 partitions per topic, writer
shards of 64, 1 s flush), started and warmed on ``--warmup`` pairs that are not timed (models loaded,
consumer groups joined; caches stay cold for the timed pairs). The clock runs from the first produced
pair until every pair is accounted for: in an I2E shard manifest, a no-entity record or a dead letter
(checked every ``--poll-s``; manifests are read once each).

The **floor** is the same work with the same models and thread settings in one fresh process and one
loop (NER extract -> CLIP scoring -> threshold -> no-entity records and I2E shards written to S3, in
batches of ``kafka.max_poll_records``): what the pipeline costs with no broker, no serialisation hops
and no process boundaries. Both load the entity-vector table beside the KB when there is one.

Rates on a shared machine move with everyone else's load, so CPU time is reported too: CPU-seconds per
pair of the floor process and of each pipeline process over the timed window (Linux /proc; "produce" is
this script's own CPU while it sends), which is what the work costs whoever else runs. With ``--runs``
above 1 the floor and the pipeline alternate which goes first. The load average is recorded.
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
from mofi.settings import S3Settings, Settings, load_settings  # noqa: E402
from mofi.stack import Stack, free_stack_ports  # noqa: E402
from mofi.v1 import records_pb2  # noqa: E402
from mofi_platform.databuild.corpus import iter_corpus  # noqa: E402
from mofi_platform.services.common.entity_vectors import kb_path  # noqa: E402
from mofi_platform.services.ner.extractor import Extractor  # noqa: E402
from mofi_platform.services.ner.service import to_proto  # noqa: E402
from mofi_platform.services.scorer.app import candidate_scorer, load_scorer  # noqa: E402
from mofi_platform.services.scorer.candidates import Kind  # noqa: E402
from mofi_platform.services.scorer.drops import count_no_entity, record_no_entity_many  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def corpus_pairs(corpus: str, n: int) -> list[records_pb2.Pair]:
    """The first ``n`` pairs of the corpus (0: all) as the producer sends them."""
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


def floor(settings: Settings, pairs, warmup) -> dict:
    """The same work in one process and one loop: pairs/s and CPU seconds per pair."""
    torch.set_num_threads(1)  # as the NER and scorer stage processes run
    store = ObjectStore(settings.s3)
    extractor = Extractor.from_settings(settings)
    scorer = load_scorer(settings)  # as the stage builds it (the entity-vector table included)
    core = candidate_scorer(settings, scorer, store)
    batch, shard, shards = settings.kafka.max_poll_records, [], 0
    prefix = f"s3://{settings.s3.i2e_bucket}/floor"

    def run(chunk) -> None:
        nonlocal shard, shards
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

    run(warmup)  # as the stages are warmed
    shard, shards = [], 0
    start, cpu0 = time.perf_counter(), time.process_time()
    for i in range(0, len(pairs), batch):
        run(pairs[i : i + batch])
    if shard:
        write_shard(store, f"{prefix}/{shards:06d}.tar", shard)
    return {
        "pairs_per_s": len(pairs) / (time.perf_counter() - start),
        "cpu_s_per_pair": (time.process_time() - cpu0) / len(pairs),
    }


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


class Accounting:
    """Pairs accounted for: in an I2E shard (each manifest read once), a no-entity record or a dead letter."""

    def __init__(self, settings: Settings, store: ObjectStore, dead: DeadLetterCount):
        self.settings, self.store, self.dead = settings, store, dead
        self._counts: dict[str, int] = {}

    def __call__(self) -> int:
        prefix = f"s3://{self.settings.s3.i2e_bucket}/{self.settings.writer.prefix}"
        for uri in list_shards(self.store, prefix):
            if uri not in self._counts:
                self._counts[uri] = read_manifest(self.store, uri)["count"]
        return sum(self._counts.values()) + count_no_entity(self.store, self.settings.s3.i2e_bucket) + self.dead.n


STAGES = ("ner", "scorer", "writer")


def pipeline(settings: Settings, pairs, warmup, store: ObjectStore, logs: Path, poll_s: float) -> dict:
    """pairs/s and CPU seconds per pair of each process over the timed window."""
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
    accounted = Accounting(settings, store, dead)
    prod = make_producer(settings.kafka)
    try:

        def send(batch) -> None:
            for p in batch:
                prod.send(settings.kafka.pairs_topic, key=p.pair_id.encode(), value=p.SerializeToString())
            prod.flush()

        def wait_for(total: int, timeout: float) -> None:
            deadline = time.monotonic() + timeout
            while accounted() < total:
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    raise RuntimeError(f"pipeline stalled; see {logs}")
                time.sleep(poll_s)

        send(warmup)
        wait_for(len(warmup), 600)  # stages started, models loaded, groups joined
        start, cpu0 = time.perf_counter(), [cpu_seconds(p.pid) for p in procs]
        produce0 = time.process_time()
        send(pairs)
        produce_cpu = time.process_time() - produce0
        wait_for(len(warmup) + len(pairs), 3600)
        rate = len(pairs) / (time.perf_counter() - start)
        cpu = {name: (cpu_seconds(p.pid) - c0) / len(pairs) for name, p, c0 in zip(STAGES, procs, cpu0)}
        return {"pairs_per_s": rate, "cpu_s_per_pair": {"produce": produce_cpu / len(pairs), **cpu}}
    finally:
        prod.close()
        dead.close()
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(60)


def _floor_in_fresh_process(settings: Settings, args) -> dict:
    cmd = [sys.executable, __file__, "--corpus", args.corpus, "--checkpoint", settings.scorer.checkpoint, "--kb",
           settings.ner.kb_path, "--pairs", str(args.pairs), "--warmup", str(args.warmup), "--_floor"]  # fmt: skip
    env = {**os.environ, **settings.to_env()}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=REPO).stdout
    return json.loads(out.strip().splitlines()[-1])


def _round(d: dict) -> dict:
    return {k: (_round(v) if isinstance(v, dict) else round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", required=True, help="Corpus shard prefix (local folder or s3:// URI).")
    ap.add_argument("--checkpoint", required=True, help="Scorer checkpoint (local path or s3:// URI).")
    ap.add_argument("--kb", default="", help="Knowledge base JSONL for NER (default: ner.kb_path, else the built one).")
    ap.add_argument("--pairs", type=int, default=0, help="Timed pairs (0: the whole corpus after the warm-up).")
    ap.add_argument("--warmup", type=int, default=16)
    ap.add_argument("--runs", type=int, default=1, help="Floor and pipeline runs, alternating which goes first.")
    ap.add_argument("--poll-s", type=float, default=0.5, help="How often the pipeline's output is counted.")
    ap.add_argument("--threshold", type=float, default=None, help="Scorer threshold (default: settings).")
    ap.add_argument(
        "--broker-storage",
        choices=["s3", "memory"],
        default="s3",
        help="Broker log in the S3 server (durable, the default stack) or in memory.",
    )
    ap.add_argument("--_floor", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    pairs = corpus_pairs(args.corpus, args.pairs + args.warmup if args.pairs else 0)
    warmup, pairs = pairs[: args.warmup], pairs[args.warmup :]
    if args._floor:  # the child process: settings come from the environment
        settings = load_settings()
        print(json.dumps(floor(settings, pairs, warmup)))
        return
    load_before = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="mofi-bench-"))
    settings = stack_settings(root, args.broker_storage)
    settings.ner.kb_path = args.kb or kb_path(load_settings())
    settings.scorer.checkpoint = (
        str(Path(args.checkpoint).resolve()) if "://" not in args.checkpoint else args.checkpoint
    )
    if args.threshold is not None:
        settings.scorer.threshold = args.threshold
    floor_settings = copy.deepcopy(settings)
    floor_settings.s3.i2e_bucket = "mofi-i2e-floor"  # keeps its no-entity records out of the pipeline's count
    stack = Stack(settings)
    stack.up()
    rows = []
    try:
        store = ObjectStore(settings.s3)
        for run in range(args.runs):
            row: dict = {"run": run}
            for arm in ("floor", "pipeline") if run % 2 == 0 else ("pipeline", "floor"):
                if arm == "floor":
                    floor_settings.s3.i2e_bucket = f"mofi-i2e-floor{run}"
                    store.ensure_bucket(floor_settings.s3.i2e_bucket)
                    row["floor"] = _floor_in_fresh_process(floor_settings, args)
                else:
                    run_settings = settings.namespaced(f"run{run}")  # its own topics, groups and buckets
                    for bucket in (run_settings.s3.i2e_bucket, run_settings.s3.corpus_bucket):
                        store.ensure_bucket(bucket)
                    row["pipeline"] = pipeline(run_settings, pairs, warmup, store, root, args.poll_s)
            stages = row["pipeline"]["cpu_s_per_pair"]
            row["pipeline_cpu_s_per_pair"] = sum(stages.values())
            row["pipeline_over_floor_cpu"] = row["pipeline_cpu_s_per_pair"] / row["floor"]["cpu_s_per_pair"]
            row["pipeline_over_floor_rate"] = row["pipeline"]["pairs_per_s"] / row["floor"]["pairs_per_s"]
            rows.append(_round(row))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        stack.down()
    print(
        json.dumps(
            {
                "pairs": len(pairs),
                "broker_storage": args.broker_storage,
                "corpus": args.corpus,
                "kb": settings.ner.kb_path,
                "threshold": settings.scorer.threshold,
                "runs": rows,
                "cpu_count": os.cpu_count(),
                "load_average_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
