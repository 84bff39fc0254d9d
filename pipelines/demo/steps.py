"""The demo's steps, in order: local stack -> data -> CLIP scorer -> I2E stream -> pipeline -> searches -> report.

Data is fetched and built (or, with --quick, the committed fixture is used); the CLIP scorer is
bootstrapped and calibrated; the NER, scorer and writer stages consume the corpus streamed through
Kafka and write I2E to S3; the Kubeflow pipeline runs locally (snapshot, torchx 2-process training,
evaluation, Milvus index, publish); example searches go through the gRPC Search service; the report
shows it all. Each step says when its recorded result may be reused (:class:`.runner.StepRunner`).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mofi.objstore import ObjectStore
from mofi.settings import Settings
from mofi_platform.pipelines.demo.commands import Commands, DemoError
from mofi_platform.pipelines.demo.plans import DemoPlan, demo_settings
from mofi_platform.pipelines.demo.runner import StepRunner

__all__ = ["Demo"]

#: What the demo shows of a pipeline run: step starts/ends, training/embedding progress, results, errors.
_PIPELINE_LINES = re.compile(
    r"Executing task|finished with status|torchx job|^(\[\d+\]:)?train |^embed |^index "
    r"|snapshot s3|checkpoint s3|^indexed|\"map\"|^Error: |FAILURE|TrainingFailed"
    r"|QualityGateFailed|quality gate"
)


class Demo:
    """One run of a plan, its state in ``state_dir`` (``state.json``, ``logs/``, ``report/``)."""

    def __init__(self, settings: Settings, plan: DemoPlan, state_dir: Path, echo: Callable[[str], None] = click.echo):
        self.plan = plan
        self.settings = demo_settings(settings, plan)
        self.dir = state_dir
        self.runner = StepRunner(state_dir, echo)
        self.commands = Commands(self.settings, state_dir / "logs", echo)
        self.logs = self.commands.logs
        self.echo = echo

    def store(self) -> ObjectStore:
        return ObjectStore(self.settings.s3)

    # -- steps ---------------------------------------------------------------------------------
    def stack(self) -> None:
        from mofi.stack import Stack

        with self.runner.step("stack", "Local stack: Kafka-protocol broker (Tansu) + S3 server (SeaweedFS)"):
            for s in Stack(self.settings).up():  # starts only what is not answering
                self.echo(f"    {s.line()}")

    def forget_i2e(self) -> None:
        """Delete the I2E dataset the demo wrote (shards, dropped-pair records, snapshots); the corpus stays."""
        store, name = self.store(), self.settings.s3.i2e_bucket
        uris = list(store.list(f"s3://{name}/")) if store.client.bucket_exists(name) else []
        for uri in uris:
            store.delete(uri)
        self.echo(f"    --fresh: removed {len(uris)} objects under s3://{name}/")

    def data(self) -> dict:
        from mofi_platform.databuild.corpus import default_shards_prefix, list_corpus_shards

        with self.runner.step("data", "Data: corpus shards, knowledge base + entity vectors, retrieval benchmark"):
            if self.plan.fixture:
                from mofi_platform.databuild.fixtures import fixture_benchmark_dir, fixture_kb_path, load_fixture_pairs

                return self.runner.record(
                    "data",
                    {
                        "pairs": len(load_fixture_pairs()),
                        "kb": str(fixture_kb_path()),
                        "benchmark": str(fixture_benchmark_dir()),
                        "source": "test fixture",
                    },
                )
            corpus = default_shards_prefix(self.settings.s3)
            return self.runner.cached(
                "data",
                lambda r: (
                    r.get("pairs_asked") == self.plan.data_pairs
                    and r.get("subset") == self.plan.data_subset
                    and bool(list_corpus_shards(self.store(), corpus))
                    and Path(r["kb"]).exists()
                    and Path(r["benchmark"]).is_dir()
                    and Path(r.get("vectors", "")).is_file()
                ),
                self._build_data,
            )

    def _build_data(self) -> dict:
        from mofi_platform.databuild.report import load_report
        from mofi_platform.services.common.entity_vectors import encoder_tag, vectors_path

        self.commands.run("data", "fetch")
        asked, subset = self.plan.data_pairs, self.plan.data_subset
        self.commands.run("data", "build", *(["--pairs", str(asked), "--subset", subset] if asked else []))
        report = load_report(self.settings.data.build_dir)
        kb_folder = report["kb"]["uri"].rpartition("/")[0]  # where the chart's NER pods fetch them from
        self.commands.run("ner", "vectors", "--kb", report["kb"]["path"], "--copy-to", kb_folder)
        pairs = sum(r.get("kept", 0) for r in report.get("corpus", []))
        found = sum(r.get("found", 0) for r in report.get("corpus", []))
        return {
            "pairs": pairs,
            "pairs_asked": self.plan.data_pairs,
            "subset": self.plan.data_subset,
            "kb": report["kb"]["path"],
            "vectors": str(vectors_path(report["kb"]["path"], encoder_tag(self.settings.ner.text_encoder))),
            "entities": report["kb"]["entities"],
            "benchmark": report["benchmark"]["dir"],
            "source": (
                f"registry packages: a {self.plan.data_subset} subset of {pairs:,} of {found:,} pairs "
                "(`mofi demo --scale full`: all)"
                if self.plan.data_pairs
                else f"registry packages: all {pairs:,} pairs"
            ),
        }

    def scorer_model(self) -> dict:
        with self.runner.step("clip", "CLIP scorer: LiT bootstrap on the raw pairs, threshold calibration"):
            found = self.runner.cached("clip", lambda r: self.store().exists(r["checkpoint"]), self._bootstrap_clip)
            if found["held_out"]:
                self.settings.scorer.threshold = float(found["threshold"])
                self.echo(
                    f"    scorer threshold {found['threshold']} (on held-out pairs it keeps "
                    f"{found['true_kept']:.0%} of true alt-texts and {found['wrong_kept']:.0%} of wrong ones)"
                )
            else:
                self.echo(
                    f"    too few pairs to hold any out: the calibration ({found['threshold']}) would be "
                    f"fitted to the training pairs, so the scorer keeps "
                    f"scorer.threshold={self.settings.scorer.threshold}"
                )
            return {**found, "threshold": self.settings.scorer.threshold}

    def _bootstrap_clip(self) -> dict:
        report = self.dir / "clip-bootstrap.json"
        self.commands.run_filtered(
            "clip",
            "bootstrap",
            *(["--fixture"] if self.plan.fixture else []),
            *self.plan.bootstrap_args,
            "--report",
            str(report),
            log="clip-bootstrap.log",
            show=re.compile(r"^frozen towers|^threshold|^Error: "),
        )
        return json.loads(report.read_text())

    def stream(self) -> dict:
        """Produce the corpus into Kafka and run the NER, scorer and writer stages until every pair is accounted for."""
        with self.runner.step("stream", "I2E: corpus -> Kafka -> NER -> CLIP scorer -> writer -> S3"):
            return self.runner.cached("stream", lambda r: self._i2e_count() >= r["written"] > 0, self._stream)

    def _stream(self) -> dict:
        from mofi.kafka import all_topics, ensure_topics
        from mofi_platform.services.scorer.drops import count_no_entity

        ensure_topics(self.settings.kafka, all_topics(self.settings.kafka))
        stages = {
            name: self.commands.start("stage", name, log=f"stage-{name}.log") for name in ("ner", "scorer", "writer")
        }
        self.echo(
            f"    stages running: {', '.join(f'{n} (pid {p.pid})' for n, p in stages.items())}; logs in {self.logs}"
        )
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
        return counts

    def _produce(self) -> int:
        """Stream the corpus (or the fixture) into the pairs topic, as `mofi produce` does; returns pairs sent."""
        from mofi.kafka import make_producer
        from mofi_platform.databuild.produce import produce_pairs

        if self.plan.fixture:
            from mofi_platform.databuild.fixtures import load_fixture_pairs

            samples = iter(load_fixture_pairs())
        else:
            from mofi_platform.databuild.corpus import default_shards_prefix, iter_corpus

            samples = iter_corpus(self.store(), default_shards_prefix(self.settings.s3))
        producer = make_producer(self.settings.kafka)
        try:
            stats = produce_pairs(
                samples,
                producer,
                self.settings.kafka,
                self.settings.s3,
                self.store(),
                total=self.runner.state["data"]["pairs"],
            )
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
                    raise DemoError(
                        f"stage {exited[0]} exited (code {stages[exited[0]].returncode}); "
                        f"see {self.logs / f'stage-{exited[0]}.log'}"
                    )
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
        with self.runner.step(
            "pipeline",
            "Kubeflow pipeline (local): snapshot -> torchx training (2 ranks) -> evaluate -> Milvus index -> publish",
        ):
            return self.runner.cached(
                "pipeline",
                lambda r: (
                    self.store().exists(r["model"]["checkpoint"])
                    and self.store().exists(self.settings.embedder.checkpoint)
                ),
                self._run_pipeline,
            )

    def _run_pipeline(self) -> dict:
        version = f"demo-{self.plan.name}-{self.runner.generation}"
        params = {
            **self.plan.pipeline,
            "snapshot_version": version,
            "min_count": self.plan.min_count,
            "benchmark": self.runner.state["data"]["benchmark"],
            "roll": True,
        }
        out = self.dir / "pipeline-result.json"
        args = [arg for k, v in params.items() for arg in ("-p", f"{k}={v if isinstance(v, str) else json.dumps(v)}")]
        self.commands.run_filtered(
            "pipeline",
            "run",
            "--root",
            str(self.dir / "pipeline-root"),
            "--out",
            str(out),
            *args,
            log="pipeline.log",
            show=_PIPELINE_LINES,
        )
        return json.loads(out.read_text())

    def searches(self, queries: list[str], image_queries: list[Path]) -> list:
        """Start `mofi serve embedder` and query the Search service over gRPC once it is ready."""
        import grpc

        from mofi.stack import free_port
        from mofi.v1 import embedder_pb2, embedder_pb2_grpc
        from mofi_platform.pipelines.report import SearchExample, SearchHit
        from mofi_platform.services.common.auth import open_channel

        with self.runner.step("search", "Searches through the gRPC Search service"):
            self.settings.embedder.port = free_port()
            server = self.commands.start("serve", "embedder", log="embedder.log")
            examples = []
            try:
                with open_channel(f"127.0.0.1:{self.settings.embedder.port}", self.settings.grpc) as channel:
                    grpc.channel_ready_future(channel).result(timeout=120)
                    stub = embedder_pb2_grpc.SearchStub(channel)
                    requests: list[tuple[str | None, bytes | None, str, Any]] = [
                        (q, None, f'"{q}"', embedder_pb2.SearchRequest(text=q, top_k=10)) for q in queries
                    ]
                    requests += [
                        (
                            None,
                            p.read_bytes(),
                            f"image {p.name}",
                            embedder_pb2.SearchRequest(image=p.read_bytes(), top_k=10),
                        )
                        for p in image_queries
                    ]
                    for text, image, label, req in requests:
                        resp = stub.Search(req, timeout=60, wait_for_ready=True)
                        hits = [SearchHit.from_proto(h) for h in resp.hits]
                        examples.append(SearchExample(query_text=text, query_image=image, hits=hits))
                        top = ", ".join(f"{(h.entity_names or [h.text])[0]} ({h.score:.2f})" for h in hits[:3])
                        self.echo(f"    search {label:<36} -> {top}")
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=60)
            return examples

    def _run_metrics(self) -> list[dict]:
        from mofi_platform.training.checkpointer import read_metrics

        return read_metrics(self.store(), self.runner.state["pipeline"]["model"]["run_dir"])

    def report(self, searches: list, summary: dict, run_metrics: list[dict]) -> Path:
        from mofi_platform.pipelines.report import build_report

        with self.runner.step("report", "HTML report"):
            pipe = self.runner.state["pipeline"]
            path = build_report(
                self.dir / "report",
                settings=self.settings,
                summary=summary,
                eval_results=pipe.get("evaluation"),
                run_metrics={pipe["model"]["run_name"]: run_metrics},
                ablation_results=_repo_file("benchmarks/ablation/results.json"),
                searches=searches,
            )
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
        run_metrics = self._run_metrics()
        summary = {
            "mode": f"{self.plan.name} ({data['source']})",
            "pairs streamed": stream["produced"],
            "I2E images": stream["written"],
            "pairs without a visible entity": stream["no_entity"],
            "dead-lettered": stream["dead_lettered"],
            "CLIP threshold": clip["threshold"],
            "I2E snapshot": pipe["model"]["snapshot"],
            "checkpoint": pipe["model"]["checkpoint"],
            **evaluation_summary(evaluation),
            **class_loss_summary(run_metrics, evaluation.get("class_loss_chance")),
            "wall time (this run)": f"{time.monotonic() - started:.0f} s",
        }
        path = self.report(searches, summary, run_metrics)
        self.echo(click.style("\nSummary", bold=True))
        for key, value in summary.items():
            self.echo(f"  {key:<32} {value}")
        self.echo(f"\nReport: file://{path.resolve()}")
        return path

    def _queries(self, data: dict) -> tuple[list[str], list[Path]]:
        """Text queries: the most frequent trained entities; image queries: two benchmark drawings."""
        from mofi.i2e import Snapshot

        snap = Snapshot.load(self.store(), self.runner.state["pipeline"]["model"]["snapshot"])
        texts = [c.name for c in sorted(snap.classes, key=lambda c: -c.count)[:4]]
        bench = sorted(Path(data["benchmark"]).glob("*.png"))
        return texts, bench[:: max(1, len(bench) // 2)][:2]


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def evaluation_summary(evaluation: dict) -> dict:
    """The summary's evaluation lines: mAP beside its references, the seen/unseen split, the gate's verdict."""
    baseline = evaluation.get("baseline") or {}
    published = evaluation.get("published") or {}
    gate = evaluation.get("gate") or {}
    against = ", ".join(gate.get("against") or []) or "no reference (floor only)"
    verdict = "passed" if gate.get("passed") else "failed: " + "; ".join(gate.get("failures") or [])
    lines = {
        "retrieval mAP": _r(evaluation.get("map", float("nan"))),
        f"frozen ImageNet baseline mAP ({baseline.get('image_size', '?')} px, same input size)": _r(
            baseline.get("map")
        ),
        "chance mAP (random embeddings)": _r((evaluation.get("chance") or {}).get("map")),
        "mAP per domain": {k: round(v, 4) for k, v in evaluation.get("map_per_domain", {}).items()},
        "mAP seen / unseen classes": (
            f"{_r(evaluation.get('map_seen'))} ({len(evaluation.get('seen_classes') or [])} classes) / "
            f"{_r(evaluation.get('map_unseen'))} ({len(evaluation.get('unseen_classes') or [])} classes)"
        ),
        "quality gate": f"against {against} (margin {gate.get('min_gain', 0.0)}): {verdict}" if gate else None,
    }
    if published:
        lines[f"published model {published.get('version', '')} mAP"] = _r(published.get("map"))
    return lines


def class_loss_summary(metrics: list[dict], chance: dict | None) -> dict:
    """The class loss at the end of training (mean of the last five steps) beside its chance level."""
    tail = [m["class_loss"] for m in metrics[-5:] if "class_loss" in m]
    if not tail or chance is None:
        return {}
    return {
        "class loss, last 5 steps (chance level)": (
            f"{sum(tail) / len(tail):.3f} ({chance['value']:.3f} for {chance['num_classes']} classes, "
            f"s={chance['scale']:g}, m={chance['margin']:g})"
        )
    }


class _TopicCounter:
    """Counts the records of a topic by reading it from the start (no consumer group, nothing committed)."""

    def __init__(self, kcfg: Any, topic: str):
        from mofi.kafka import make_reader

        self.consumer = make_reader(kcfg, topic)
        self.total = 0

    def count(self) -> int:
        for records in self.consumer.poll(timeout_ms=500).values():
            self.total += len(records)
        return self.total

    def __enter__(self) -> _TopicCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.consumer.close()


def _repo_file(name: str) -> Path | None:
    path = Path(__file__).resolve().parents[2] / name
    return path if path.exists() else None
