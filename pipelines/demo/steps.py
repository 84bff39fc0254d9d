"""`mofi demo [--quick]`: the whole system end to end on this machine, resumable, ending in an HTML report.

Steps: local stack -> data (fetch + build, or the committed fixture with --quick) -> CLIP scorer
bootstrap -> the NER, scorer and writer stages consume the corpus streamed through Kafka and write
I2E to S3 -> the Kubeflow pipeline runs locally (snapshot, torchx 2-process training, evaluation,
Milvus index, publish) -> example searches through the gRPC Search service -> report.

Why subprocesses: every step is the command a user would run (`mofi data build`, `mofi stage ner`,
`mofi serve embedder`, ...), so the demo exercises the real entry points and each heavy model lives
in its own process. Why a state file: each finished step records its outputs in
``<state_dir>/state.json``; a rerun skips steps whose outputs still exist, so an interrupted demo
resumes where it stopped and a finished one only refreshes the report.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import click

from mofi.objstore import ObjectStore
from mofi.settings import Settings

__all__ = ["demo", "Demo", "DemoPlan", "DemoError", "PLANS"]


class DemoError(click.ClickException):
    """A demo step failed; the message names the step, the command and where its log is."""


@dataclass(frozen=True)
class DemoPlan:
    """How big the run is: ``full`` on the built corpus, ``quick`` on the committed fixture."""

    name: str
    fixture: bool
    min_count: int
    bootstrap_args: tuple[str, ...]
    pipeline: dict[str, Any] = field(default_factory=dict)


PLANS = {
    "full": DemoPlan("full", fixture=False, min_count=3, bootstrap_args=("--epochs", "60", "--max-pairs", "2000"), pipeline={
        "model_config": "mofi-effnet-lite0-minilm", "recipe": "multitask", "steps": 60, "batch_size": 16,
        "train_options": json.dumps({"image_size": 128, "context_length": 16, "checkpoint_every": 20}),
        "min_map": 0.0, "index_batch_size": 64}),
    "quick": DemoPlan("quick", fixture=True, min_count=1, bootstrap_args=("--epochs", "20"), pipeline={
        "model_config": "mofi-tiny-vit", "recipe": "multitask", "steps": 12, "batch_size": 8,
        "train_options": json.dumps({"pretrained_towers": False, "lr": 2e-3, "tower_lr_scale": 1.0,
                                     "warmup_steps": 2, "checkpoint_every": 6, "shuffle_buffer": 16}),
        "min_map": 0.0, "index_batch_size": 32}),
}


def demo_settings(settings: Settings, plan: DemoPlan) -> Settings:
    """The quick run gets its own buckets, topics, collection and data so it never mixes with the full one."""
    import copy

    s = copy.deepcopy(settings)
    if plan.fixture:
        models = f"s3://{s.s3.models_bucket}/"
        for name in ("corpus_bucket", "i2e_bucket", "models_bucket"):
            setattr(s.s3, name, f"{getattr(s.s3, name)}-quick")
        s.scorer.checkpoint = s.scorer.checkpoint.replace(models, f"s3://{s.s3.models_bucket}/")
        s.embedder.checkpoint = s.embedder.checkpoint.replace(models, f"s3://{s.s3.models_bucket}/")
        s.training.checkpoint_dir = s.training.checkpoint_dir.replace(models, f"s3://{s.s3.models_bucket}/")
        for name in ("pairs_topic", "candidates_topic", "i2e_topic", "dead_letter_topic"):
            setattr(s.kafka, name, f"{getattr(s.kafka, name)}.quick")
        s.kafka.group_prefix = f"{s.kafka.group_prefix}-quick"
        s.milvus.collection = f"{s.milvus.collection}_quick"
        from mofi.data.fixtures import fixture_kb_path

        s.ner.kb_path = str(fixture_kb_path())
    return s


class Demo:
    def __init__(self, settings: Settings, plan: DemoPlan, state_dir: Path, echo: Callable[[str], None] = click.echo):
        self.plan = plan
        self.settings = demo_settings(settings, plan)
        self.dir = state_dir
        self.logs = state_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.state_file = state_dir / "state.json"
        self.state: dict[str, Any] = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
        self.echo = echo
        self.timings: dict[str, float] = {}

    # -- bookkeeping -------------------------------------------------------------------------
    def _save(self) -> None:
        self.state_file.write_text(json.dumps(self.state, indent=2, default=str) + "\n")

    @contextmanager
    def step(self, name: str, title: str) -> Iterator[None]:
        n = len(self.timings) + 1
        self.echo(click.style(f"\n[{n}] {title}", bold=True))
        t0 = time.monotonic()
        yield
        self.timings[name] = round(time.monotonic() - t0, 1)
        self.state.setdefault("timings", {})[name] = self.timings[name]  # of the latest run (0 when reused)
        self._save()
        self.echo(f"    done in {self.timings[name]:.0f} s")

    def done(self, name: str, still_valid: Callable[[dict], bool] = lambda _: True) -> dict | None:
        """The recorded result of ``name`` if it finished before and its outputs still exist."""
        result = self.state.get(name)
        if result is not None and still_valid(result):
            self.echo(f"    reusing the result of an earlier run ({self.state_file})")
            return result
        return None

    def forget(self, keep: tuple[str, ...]) -> None:
        """Drop the recorded results of every step but ``keep`` (their outputs are then rebuilt).

        The generation counter goes up, so the rebuilt snapshot and training run get new names:
        snapshots are immutable and a training run of an existing name would resume, not retrain.
        """
        generation = int(self.state.get("generation", 0)) + 1
        self.state = {k: v for k, v in self.state.items() if k in keep}
        self.state["generation"] = generation
        self._save()

    def record(self, name: str, result: dict) -> dict:
        self.state[name] = result
        self._save()
        return result

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, **self.settings.to_env(), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

    def mofi(self, *args: str, log: str | None = None) -> str:
        """Run ``mofi <args>``; stdout is returned (and shown), stderr goes to the terminal or ``log``."""
        cmd = [sys.executable, "-m", "mofi.cli", *args]
        self.echo(f"    $ mofi {' '.join(args)}")
        with open(self.logs / log, "w") if log else open(os.devnull, "w") as sink:
            proc = subprocess.run(cmd, env=self.env, stdout=subprocess.PIPE, stderr=sink if log else None, text=True)
        if proc.stdout.strip():
            self.echo("\n".join("      " + line for line in proc.stdout.strip().splitlines()[-3:]))
        if proc.returncode != 0:
            where = f"; log {self.logs / log}" if log else ""
            raise DemoError(f"`mofi {' '.join(args)}` failed with exit code {proc.returncode}{where}")
        return proc.stdout

    def mofi_filtered(self, *args: str, log: str, show: "re.Pattern[str]", every_s: float = 5.0) -> None:
        """Run ``mofi <args>`` with all output in ``log``; echo only lines matching ``show``.

        Progress-bar lines (carriage returns count as line ends) are echoed at most every ``every_s``.
        """
        cmd = [sys.executable, "-m", "mofi.cli", *args]
        self.echo(f"    $ mofi {' '.join(args)}  (full log: {self.logs / log})")
        last = 0.0
        with open(self.logs / log, "w") as sink:
            proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for line in proc.stdout:
                sink.write(line)
                line = line.strip()
                if not show.search(line):
                    continue
                progress = bool(_PROGRESS.search(line))
                if progress and time.monotonic() - last < every_s:
                    continue
                last = time.monotonic() if progress else last
                self.echo("      " + line[:160])
        if proc.wait() != 0:
            raise DemoError(f"`mofi {' '.join(args)}` failed with exit code {proc.returncode}; log {self.logs / log}")

    def store(self) -> ObjectStore:
        return ObjectStore(self.settings.s3)

    # -- steps ---------------------------------------------------------------------------------
    def stack(self) -> None:
        from mofi.stack import Stack

        with self.step("stack", "Local stack: Kafka-protocol broker (Tansu) + S3 server (SeaweedFS)"):
            stack = Stack(self.settings)
            if stack.is_up():
                self.echo("    already running")
            else:
                stack.up()
            for s in stack.status():
                self.echo(f"    {s.line()}")

    def forget_i2e(self) -> None:
        """Delete the I2E dataset the demo wrote (shards, dropped-pair records, snapshots); the corpus stays."""
        store, name = self.store(), self.settings.s3.i2e_bucket
        uris = list(store.list(f"s3://{name}/")) if store.client.bucket_exists(name) else []
        for uri in uris:
            store.delete(uri)
        self.echo(f"    --fresh: removed {len(uris)} objects under s3://{name}/")

    def data(self) -> dict:
        from mofi.data.corpus import list_corpus_shards

        with self.step("data", "Data: corpus shards, knowledge base, retrieval benchmark"):
            if self.plan.fixture:
                from mofi.data.fixtures import fixture_benchmark_dir, fixture_kb_path, load_fixture_pairs

                return self.record("data", {"pairs": len(load_fixture_pairs()), "kb": str(fixture_kb_path()),
                                            "benchmark": str(fixture_benchmark_dir()), "source": "test fixture"})
            corpus = f"s3://{self.settings.s3.corpus_bucket}/shards/"
            found = self.done("data", lambda r: bool(list_corpus_shards(self.store(), corpus))
                              and Path(r["kb"]).exists() and Path(r["benchmark"]).is_dir())
            if found:
                return found
            self.mofi("data", "fetch")
            self.mofi("data", "build")
            from mofi.data.report import load_report

            report = load_report(self.settings.data.build_dir)
            pairs = sum(r.get("kept", 0) for r in report.get("corpus", []))
            return self.record("data", {"pairs": pairs, "kb": report["kb"]["path"], "entities": report["kb"]["entities"],
                                        "benchmark": report["benchmark"]["dir"], "source": "registry packages"})

    def scorer_model(self) -> dict:
        with self.step("clip", "CLIP scorer: LiT bootstrap on the raw pairs, threshold calibration"):
            found = self.done("clip", lambda r: self.store().exists(r["checkpoint"]))
            if not found:
                report = self.dir / "clip-bootstrap.json"
                self.mofi_filtered("clip", "bootstrap", *(["--fixture"] if self.plan.fixture else []),
                                   *self.plan.bootstrap_args, "--report", str(report), log="clip-bootstrap.log",
                                   show=re.compile(r"^frozen towers|^threshold|^Error: "))
                found = self.record("clip", json.loads(report.read_text()))
            if found["held_out"]:
                self.settings.scorer.threshold = float(found["threshold"])
                self.echo(f"    scorer threshold {found['threshold']} (on held-out pairs it keeps "
                          f"{found['true_kept']:.0%} of true alt-texts and {found['wrong_kept']:.0%} of wrong ones)")
            else:
                self.echo(f"    too few pairs to hold any out: the calibration ({found['threshold']}) would be fitted "
                          f"to the training pairs, so the scorer keeps scorer.threshold={self.settings.scorer.threshold}")
            return {**found, "threshold": self.settings.scorer.threshold}

    def stream(self) -> dict:
        """Produce the corpus into Kafka and run the NER, scorer and writer stages until every pair is accounted for."""
        from mofi_platform.services.scorer.drops import count_no_entity

        with self.step("stream", "I2E: corpus -> Kafka -> NER -> CLIP scorer -> writer -> S3"):
            found = self.done("stream", lambda r: self._i2e_count() >= r["written"] > 0)
            if found:
                return found
            from mofi.kafka import ensure_topics

            k = self.settings.kafka
            ensure_topics(k, [k.pairs_topic, k.candidates_topic, k.i2e_topic, k.dead_letter_topic])
            stages = {name: subprocess.Popen([sys.executable, "-m", "mofi.cli", "stage", name], env=self.env,
                                             stdout=open(self.logs / f"stage-{name}.log", "w"), stderr=subprocess.STDOUT)
                      for name in ("ner", "scorer", "writer")}
            self.echo(f"    stages running: {', '.join(f'{n} (pid {p.pid})' for n, p in stages.items())}; "
                      f"logs in {self.logs}")
            try:
                expected = self._produce()
                counts = self._wait_accounted(expected, stages)
            finally:
                for p in stages.values():
                    if p.poll() is None:
                        p.send_signal(signal.SIGTERM)
                for p in stages.values():
                    p.wait(timeout=60)
            counts["no_entity"] = count_no_entity(self.store(), self.settings.s3.i2e_bucket)
            return self.record("stream", counts)

    def _produce(self) -> int:
        """Stream the corpus (or the fixture) into the pairs topic, as `mofi produce` does; returns pairs sent."""
        from mofi.data.produce import produce_pairs
        from mofi.kafka import make_producer

        if self.plan.fixture:
            from mofi.data.fixtures import load_fixture_pairs

            samples = iter(load_fixture_pairs())
        else:
            from mofi.data.corpus import iter_corpus

            samples = iter_corpus(self.store(), f"s3://{self.settings.s3.corpus_bucket}/shards/")
        producer = make_producer(self.settings.kafka)
        try:
            stats = produce_pairs(samples, producer, self.settings.kafka, self.settings.s3, self.store(),
                                  total=self.state["data"]["pairs"])
        finally:
            producer.close()
        self.echo(f"    sent {stats.sent} pairs to {self.settings.kafka.pairs_topic}")
        return stats.sent

    def _i2e_count(self) -> int:
        from mofi.i2e import list_shards, read_manifest, shards_prefix

        store = self.store()
        return sum(read_manifest(store, s)["count"] for s in list_shards(store, shards_prefix(self.settings)))

    def _wait_accounted(self, expected: int, stages: dict[str, subprocess.Popen], stall_s: float = 180.0) -> dict:
        """Until written + dropped + dead-lettered covers every produced pair (progress bar), or a stall."""
        from tqdm import tqdm

        from mofi_platform.services.scorer.drops import count_no_entity

        last_change, seen = time.monotonic(), -1
        dead = _TopicCounter(self.settings.kafka, self.settings.kafka.dead_letter_topic)
        with dead, tqdm(total=expected, desc="    pairs accounted for", unit="pair") as bar:
            while True:
                exited = [n for n, p in stages.items() if p.poll() is not None]
                if exited:
                    raise DemoError(f"stage {exited[0]} exited (code {stages[exited[0]].returncode}); "
                                    f"see {self.logs / f'stage-{exited[0]}.log'}")
                written = self._i2e_count()
                dropped = count_no_entity(self.store(), self.settings.s3.i2e_bucket)
                dead_lettered = dead.count()
                total = written + dropped + dead_lettered
                bar.update(min(total, expected) - bar.n)
                bar.set_postfix(i2e=written, no_entity=dropped, dead_letter=dead_lettered)
                if total >= expected:
                    return {"produced": expected, "written": written, "dead_lettered": dead_lettered}
                if total != seen:
                    seen, last_change = total, time.monotonic()
                elif time.monotonic() - last_change > stall_s:
                    raise DemoError(f"no progress for {stall_s:.0f} s at {total}/{expected} pairs; see {self.logs}")
                time.sleep(2)

    def pipeline(self) -> dict:
        with self.step("pipeline", "Kubeflow pipeline (local): snapshot -> torchx training (2 ranks) -> "
                                   "evaluate -> Milvus index -> publish"):
            found = self.done("pipeline", lambda r: self.store().exists(r["model"]["checkpoint"])
                              and self.store().exists(self.settings.embedder.checkpoint))
            if found:
                return found
            version = f"demo-{self.plan.name}-{self.state.get('generation', 0)}"
            params = {**self.plan.pipeline, "snapshot_version": version, "min_count": self.plan.min_count,
                      "benchmark": self.state["data"]["benchmark"], "roll": True}
            out = self.dir / "pipeline-result.json"
            args = [arg for k, v in params.items()
                    for arg in ("-p", f"{k}={v if isinstance(v, str) else json.dumps(v)}")]
            self.mofi_filtered("pipeline", "run", "--root", str(self.dir / "pipeline-root"), "--out", str(out), *args,
                               log="pipeline.log", show=_PIPELINE_LINES)
            return self.record("pipeline", json.loads(out.read_text()))

    def searches(self, queries: list[str], image_queries: list[Path]) -> list:
        """Start `mofi serve embedder` and query the Search service over gRPC."""
        import grpc

        from mofi.v1 import embedder_pb2, embedder_pb2_grpc
        from mofi_platform.pipelines.report import SearchExample, SearchHit

        with self.step("search", "Searches through the gRPC Search service"):
            self.settings.embedder.port = _free_port()
            server = subprocess.Popen([sys.executable, "-m", "mofi.cli", "serve", "embedder"], env=self.env,
                                      stdout=open(self.logs / "embedder.log", "w"), stderr=subprocess.STDOUT)
            examples = []
            try:
                channel = grpc.insecure_channel(f"127.0.0.1:{self.settings.embedder.port}")
                grpc.channel_ready_future(channel).result(timeout=120)
                stub = embedder_pb2_grpc.SearchStub(channel)
                requests = [(q, None, f'"{q}"', embedder_pb2.SearchRequest(text=q, top_k=10)) for q in queries]
                requests += [(None, p.read_bytes(), f"image {p.name}",
                              embedder_pb2.SearchRequest(image=p.read_bytes(), top_k=10)) for p in image_queries]
                for text, image, label, req in requests:
                    resp = _retry(lambda: stub.Search(req, timeout=60))
                    hits = [SearchHit.from_proto(h) for h in resp.hits]
                    examples.append(SearchExample(query_text=text, query_image=image, hits=hits))
                    top = ", ".join(f"{(h.entity_names or [h.text])[0]} ({h.score:.2f})" for h in hits[:3])
                    self.echo(f"    search {label:<36} -> {top}")
                channel.close()
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=60)
            return examples

    def report(self, searches: list, summary: dict) -> Path:
        from mofi_platform.pipelines.report import build_report
        from mofi_platform.training.trainer import read_metrics

        with self.step("report", "HTML report"):
            pipe = self.state["pipeline"]
            run_dir = pipe["model"]["run_dir"]
            path = build_report(self.dir / "report", settings=self.settings, summary=summary,
                                eval_results=pipe.get("evaluation"),
                                run_metrics={pipe["model"]["run_name"]: read_metrics(self.store(), run_dir)},
                                ablation_results=_repo_file("benchmarks/ablation/results.json"), searches=searches)
            self.echo(f"    {path}")
            return path

    # -- the whole run -------------------------------------------------------------------------
    def run(self, fresh: bool = False) -> Path:
        started = time.monotonic()
        self.stack()
        if fresh:
            self.forget_i2e()
        data = self.data()
        clip = self.scorer_model()
        stream = self.stream()
        pipe = self.pipeline()
        queries, images = self._queries(data)
        searches = self.searches(queries, images)
        evaluation = pipe.get("evaluation", {})
        summary = {
            "mode": f"{self.plan.name} ({data['source']})",
            "pairs streamed": stream["produced"],
            "I2E images": stream["written"],
            "pairs without a visible entity": stream["no_entity"],
            "dead-lettered": stream["dead_lettered"],
            "CLIP threshold": clip["threshold"],
            "I2E snapshot": pipe["model"]["snapshot"],
            "checkpoint": pipe["model"]["checkpoint"],
            "retrieval mAP": round(evaluation.get("map", float("nan")), 4),
            "mAP per domain": {k: round(v, 4) for k, v in evaluation.get("map_per_domain", {}).items()},
            "wall time (this run)": f"{time.monotonic() - started:.0f} s",
        }
        path = self.report(searches, summary)
        self.echo(click.style("\nSummary", bold=True))
        for key, value in summary.items():
            self.echo(f"  {key:<32} {value}")
        self.echo(f"\nReport: file://{path.resolve()}")
        return path

    def _queries(self, data: dict) -> tuple[list[str], list[Path]]:
        """Text queries: the most frequent trained entities; image queries: two benchmark drawings."""
        from mofi.i2e import Snapshot

        snap = Snapshot.load(self.store(), self.state["pipeline"]["model"]["snapshot"])
        texts = [c.name for c in sorted(snap.classes, key=lambda c: -c.count)[:4]]
        bench = sorted(Path(data["benchmark"]).glob("*.png"))
        return texts, bench[:: max(1, len(bench) // 2)][:2]


class _TopicCounter:
    """Counts the records of a topic by reading it from the start (no consumer group, nothing committed)."""

    def __init__(self, kcfg, topic: str):
        from kafka import KafkaConsumer, TopicPartition

        from mofi.kafka import bootstrap_servers

        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers(kcfg), group_id=None,
                                      enable_auto_commit=False, auto_offset_reset="earliest")
        parts = self.consumer.partitions_for_topic(topic) or set()
        self.consumer.assign([TopicPartition(topic, p) for p in sorted(parts)])
        self.total = 0

    def count(self) -> int:
        for records in self.consumer.poll(timeout_ms=500).values():
            self.total += len(records)
        return self.total

    def __enter__(self) -> "_TopicCounter":
        return self

    def __exit__(self, *exc) -> None:
        self.consumer.close()


_PROGRESS = re.compile(r"\d+/\d+ \[[\d:]+<")  # a tqdm bar: "12/218 [00:40<07:10"

#: What the demo shows of a pipeline run: step starts/ends, training/embedding progress, results, errors.
_PIPELINE_LINES = re.compile(r"Executing task|finished with status|torchx job|^(\[\d+\]:)?train |^embed |^index |snapshot s3|"
                             r"checkpoint s3|^indexed|\"map\"|^Error: |FAILURE|TrainingFailed|QualityGateFailed")


def _free_port() -> int:
    from mofi.stack import free_port

    return free_port()


def _retry(call: Callable, attempts: int = 3):
    import grpc

    for i in range(attempts):
        try:
            return call()
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE or i == attempts - 1:
                raise
            time.sleep(2)


def _repo_file(name: str) -> Path | None:
    path = Path(__file__).resolve().parents[1] / name
    return path if path.exists() else None


@click.command("demo")
@click.option("--quick", is_flag=True, help="The committed fixture and a tiny model: the whole flow in minutes.")
@click.option("--state-dir", type=click.Path(file_okay=False), default=None,
              help="Where the run keeps its state, logs and report [default: <stack.data_dir>/../demo-<mode>].")
@click.option("--fresh", is_flag=True, help="Redo the I2E dataset and everything after it (data and scorer stay cached).")
@click.option("--keep-stack", is_flag=True, help="Leave the local stack running afterwards (for mofi search etc.).")
@click.pass_obj
def demo(settings: Settings, quick: bool, state_dir: str | None, fresh: bool, keep_stack: bool) -> None:
    """Run the main job end to end on this machine and write an HTML report (rerunning resumes)."""
    plan = PLANS["quick" if quick else "full"]
    root = Path(state_dir) if state_dir else Path(settings.stack.data_dir).parent / f"demo-{plan.name}"
    run = Demo(settings, plan, root)
    if fresh:
        run.forget(keep=("data", "clip"))
    try:
        run.run(fresh=fresh)
    finally:
        if not keep_stack:
            from mofi.stack import Stack

            Stack(run.settings).down()
            click.echo("local stack stopped (its data stays in "
                       f"{run.settings.stack.data_dir}; `mofi stack up` brings it back)")
