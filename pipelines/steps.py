"""The training pipeline's steps as plain functions of the settings.

Why a module of its own: a KFP lightweight component ships the source of one function to a pod;
keeping each component body to a call into this module means the same logic runs from the
pipeline, the demo and tests, and the compiled pipeline YAML stays small and stable.

Steps: :func:`take_snapshot` (freeze the I2E shards) -> :func:`launch_training` (a torchx job,
``local_cwd`` here or ``kubernetes``/Volcano in a cluster, logs streamed, failure raised) ->
:func:`evaluate_checkpoint` (retrieval mAP beside its references, and the quality gate's verdict) ->
:func:`index_checkpoint` (new Milvus collection, alias switch) -> :func:`roll_embedder` (publish the
checkpoint; restart the embedder Deployment).

Why the quality gate compares against references, not a constant: an mAP means something only beside
what the system had without the new model. By default the checkpoint must beat the frozen ImageNet
baseline at its own input size and the model currently published for the embedder (when there is one)
by ``min_gain``; ``min_map`` stays an absolute floor. :func:`quality_gate` gives the verdict with its
numbers; the pipeline indexes and rolls only a model that passed, and fails the run otherwise.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mofi import IMAGE
from mofi.i2e import Snapshot, create_snapshot, list_shards, new_version, read_manifest, shards_prefix, snapshot_uri
from mofi.objstore import ObjectStore, join_uri, parse_uri
from mofi.settings import CREDENTIALS, Settings, TrainingSettings, env_name, load_settings

if TYPE_CHECKING:
    from mofi_platform.training.config import TrainConfig

__all__ = [
    "SnapshotInfo",
    "TrainJob",
    "TrainingFailed",
    "StepTerminated",
    "RESTRICTED_CONTAINER",
    "RESTRICTED_POD",
    "job_options",
    "QualityGateFailed",
    "step_settings",
    "take_snapshot",
    "train_config",
    "train_app",
    "config_app",
    "plan_training",
    "launch_training",
    "fetch_benchmark",
    "GATE_REFERENCES",
    "parse_gate",
    "quality_gate",
    "evaluate_checkpoint",
    "index_checkpoint",
    "roll_embedder",
    "published_uri",
    "publish_checkpoint",
    "MUTABLE_CHECKPOINT",
    "CHECKPOINT_ANNOTATION",
]

log = logging.getLogger(__name__)


#: Pod-template annotation the roll step sets: a new value makes Kubernetes roll the Deployment.
CHECKPOINT_ANNOTATION = "mofi.dev/checkpoint-version"
#: The one checkpoint name the roll step overwrites: an embedder pinned to anything else keeps its model.
MUTABLE_CHECKPOINT = "latest.pt"


class TrainingFailed(RuntimeError):
    """The torchx job ended in a state other than SUCCEEDED, or did not start or end in time."""


class StepTerminated(TrainingFailed):
    """The training step got SIGTERM (pod deleted or evicted, run terminated); its job was cancelled."""


class QualityGateFailed(RuntimeError):
    """The evaluated model does not beat the quality gate's references (or is below its floor)."""


@dataclass(frozen=True)
class SnapshotInfo:
    uri: str
    version: str
    num_samples: int
    num_classes: int
    num_shards: int


def step_settings() -> Settings:
    """The settings of a pipeline step (MOFI_* environment, optional MOFI_CONFIG file), with INFO logging."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return load_settings()


def take_snapshot(settings: Settings, version: str = "", min_count: int = 3, val_percent: float = 5.0) -> SnapshotInfo:
    """Freeze the complete I2E shards into an immutable, versioned snapshot.

    An existing snapshot of the same version is reused rather than overwritten, so a retried
    pipeline run (or a resumed demo) trains on exactly the data it started with.
    """
    store = ObjectStore(settings.s3)
    version = version or new_version()
    uri = snapshot_uri(settings.s3.i2e_bucket, version)
    if store.exists(uri):
        snap = Snapshot.load(store, uri)
        log.info("snapshot %s exists; reusing it", uri)
    else:
        prefix = shards_prefix(settings)
        if not list_shards(store, prefix):
            raise ValueError(f"no complete I2E shards under {prefix}: run the I2E stages first")
        snap = create_snapshot(store, prefix, uri, min_count=min_count, val_percent=val_percent)
    if not snap.classes:
        raise ValueError(f"snapshot {uri} has no entity with at least {min_count} images")
    return SnapshotInfo(uri, snap.version, snap.num_samples, len(snap.classes), len(snap.shards))


@dataclass(frozen=True)
class TrainJob:
    """Where and how big the training job is; everything else is ``mofi train`` arguments."""

    scheduler: str = "local_cwd"  # local_cwd | kubernetes
    nnodes: int = 1
    nproc_per_node: int = 2
    image: str = IMAGE
    cpu: int = 2
    gpu: int = 0
    memMB: int = 8192
    queue: str = "default"
    namespace: str = ""
    credentials_secret: str = "mofi-credentials"
    max_retries: int = 0
    poll_s: float = 2.0  # seconds between status polls of the running job


def train_config(settings: Settings, snapshot: str, run_name: str, options: dict[str, Any]) -> TrainConfig:
    """The ``TrainConfig`` of a run: ``options`` are flat ``mofi train`` options; the rest comes from ``settings``.

    Built here, not in a pod, so a bad option fails the step before any job starts.
    """
    from mofi_platform.training.config import TrainConfig

    return TrainConfig.from_options({"snapshot": snapshot, "run_name": run_name, **options}, settings)


def job_options(options: dict[str, Any], job: TrainJob) -> dict[str, Any]:
    """``options`` for a run in ``job``: a job with GPUs trains with ``device=cuda``, which fails loudly in an
    image or pod without CUDA instead of falling back to gloo on the CPU."""
    if job.gpu > 0:
        if options.get("device", "cuda") != "cuda":
            raise ValueError(f"gpu={job.gpu} with device={options['device']!r}: a GPU job trains with device=cuda")
        return {**options, "device": "cuda"}
    return options


def train_app(settings: Settings, snapshot: str, run_name: str, options: dict[str, Any], job: TrainJob):
    """The torchx AppDef of :func:`train_config`'s run for ``job`` (see :func:`config_app`)."""
    return config_app(settings, train_config(settings, snapshot, run_name, job_options(options, job)), job)


def config_app(settings: Settings, cfg: TrainConfig, job: TrainJob):
    """The torchx AppDef: ``mofi train`` under torchrun with ``cfg`` as its arguments and the settings as env.

    Credentials are left out of the job's environment: locally the processes inherit them, and
    on Kubernetes :func:`launch_training` adds them from the Secret (never as plain values).
    """
    from mofi_platform.training.components import train
    from mofi_platform.training.config import config_argv

    secret_env = {env_name(section, field) for section, field in CREDENTIALS}
    env = {k: v for k, v in settings.to_env().items() if k not in secret_env}
    return train(
        *config_argv(cfg),
        image=job.image,
        j=f"{job.nnodes}x{job.nproc_per_node}",
        cpu=job.cpu,
        gpu=job.gpu,
        memMB=job.memMB,
        env=env,
        max_retries=job.max_retries,
        name=f"mofi-train-{cfg.run_name}"[:60],
    )


def _secret_env_vars(secret: str) -> list:
    from kubernetes import client

    return [
        client.V1EnvVar(
            name=env_name(section, field),
            value_from=client.V1EnvVarSource(
                secret_key_ref=client.V1SecretKeySelector(name=secret, key=c.secret_key, optional=c.optional)
            ),
        )
        for (section, field), c in CREDENTIALS.items()
    ]


def _add_secret_env(resource: dict, secret: str) -> None:
    """Give every container of the Volcano job the credentials from ``secret`` (secretKeyRef)."""
    for task in resource["spec"]["tasks"]:
        for container in task["template"].spec.containers:
            container.env = [*(container.env or []), *_secret_env_vars(secret)]


#: Training pods meet the restricted Pod Security Standard: the image's numeric non-root user (Dockerfile
#: ``USER 10001``), no privilege escalation, no capabilities, the runtime's seccomp profile.
RESTRICTED_POD: dict[str, Any] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
RESTRICTED_CONTAINER: dict[str, Any] = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _harden_pods(resource: dict, training: TrainingSettings) -> None:
    """Tolerations, node selector and pull secrets from the settings, and the restricted security
    context, on every pod of the Volcano job (on top of what torchx generated)."""
    from kubernetes import client

    api = client.ApiClient()

    def model(data: Any, kind: str) -> Any:
        return api._ApiClient__deserialize(data, kind)  # torchx builds its pods from the same models

    tolerations = [model(t, "V1Toleration") for t in training.job_tolerations_list()]
    selector = training.job_node_selector_dict()
    secrets = [client.V1LocalObjectReference(name=n) for n in training.job_image_pull_secrets_list()]
    for task in resource["spec"]["tasks"]:
        spec = task["template"].spec
        spec.tolerations = [*(spec.tolerations or []), *tolerations] or None
        spec.node_selector = {**(spec.node_selector or {}), **selector} or None
        spec.image_pull_secrets = [*(spec.image_pull_secrets or []), *secrets] or None
        spec.security_context = model(RESTRICTED_POD, "V1PodSecurityContext")
        for container in spec.containers:
            container.security_context = model(RESTRICTED_CONTAINER, "V1SecurityContext")


def _pod_namespace() -> str:
    """The namespace of the pod this runs in ("" outside a cluster)."""
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return path.read_text().strip() if path.exists() else ""


def _scheduler_cfg(job: TrainJob) -> dict[str, Any]:
    if job.scheduler == "kubernetes":
        cfg: dict[str, Any] = {"queue": job.queue, "validate_spec": False}
        namespace = job.namespace or _pod_namespace()
        if namespace:
            cfg["namespace"] = namespace  # the pipeline's namespace, where its service account may create jobs
        return cfg
    if job.scheduler == "local_cwd":
        return {}
    raise ValueError(f"unknown scheduler {job.scheduler!r}: local_cwd or kubernetes")


def plan_training(runner, app, job: TrainJob, training: TrainingSettings | None = None):
    """The scheduler request (torchx dry run) for ``app``: what :func:`launch_training` submits.

    Locally the ranks get this interpreter's torchrun and a share of the cores; on Kubernetes every
    container of the Volcano job gets the credentials from the Secret, and every pod the restricted
    security context and ``training``'s tolerations, node selector and pull secrets.
    """
    if job.scheduler == "local_cwd":
        _local_env(app.roles[0].env, job.nproc_per_node)
    info = runner.dryrun(app, job.scheduler, cfg=_scheduler_cfg(job))
    if job.scheduler == "kubernetes":
        _add_secret_env(info.request.resource, job.credentials_secret)
        _harden_pods(info.request.resource, training or TrainingSettings())
    return info


def launch_training(
    settings: Settings,
    snapshot: str,
    run_name: str,
    options: dict[str, Any],
    job: TrainJob,
    on_log: Callable[[str], None] = print,
    runner=None,
) -> dict[str, Any]:
    """Run the training job to completion and return its checkpoint ``{checkpoint, run_dir, step, job}``.

    The job's lifecycle belongs to the step: the step waits for the job to run (at most
    ``training.job_start_timeout_s``) before it follows the logs of rank 0 into ``on_log`` (again after a
    pod restart), and cancels the job when it fails, times out (``training.job_timeout_s``) or gets SIGTERM
    (:class:`StepTerminated`). A job that does not succeed raises :class:`TrainingFailed` with its state and
    the last log lines.

    One job per run: the run's folder holds a lock (``job.json``, the torchx handle of the job writing it).
    A retried step cancels a job an earlier attempt left running before it starts its own, so two jobs never
    write beside each other; the new job resumes from the run's last checkpoint (the trainer's contract).
    ``runner`` is a torchx runner the caller keeps (closed by the caller); by default one of the step's own.
    """
    from torchx.runner import get_runner

    from mofi_platform.training.checkpoint import latest_checkpoint

    cfg = train_config(settings, snapshot, run_name, job_options(options, job))
    app = config_app(settings, cfg, job)
    store = ObjectStore(settings.s3)
    lock = join_uri(cfg.run_dir, "job.json")
    own_runner = runner is None
    runner = runner or get_runner()
    tail: deque[str] = deque(maxlen=20)

    def log(line: str) -> None:
        tail.append(line)
        on_log(line)

    handle = None
    try:
        with _sigterm_raises():
            _cancel_orphan(runner, store, lock, job, on_log)
            handle = runner.schedule(plan_training(runner, app, job, settings.training))
        with _sigterm_raises():  # again: torchx's local scheduler sets a handler of its own when it schedules
            store.put_bytes(lock, json.dumps({"job": handle, "started": _now().isoformat()}).encode())
            on_log(f"torchx job {handle}")
            status = _follow_job(runner, handle, app.roles[0].name, job, settings.training, log)
    except BaseException as e:
        if handle is not None:
            on_log(f"cancelling torchx job {handle}: {type(e).__name__}: {e}")
            _cancel(runner, handle, job)
        raise
    else:
        store.delete(lock)
    finally:
        if own_runner:
            runner.close()
    if status.state.name != "SUCCEEDED":
        raise TrainingFailed(f"training job {handle} ended {status.state.name}; last log lines:\n" + "\n".join(tail))
    found = latest_checkpoint(store, cfg.run_dir)
    if found is None:
        raise TrainingFailed(f"training job {handle} succeeded but wrote no checkpoint under {cfg.run_dir}")
    step, uri = found
    return {"checkpoint": uri, "run_dir": cfg.run_dir, "step": step, "job": handle}


def _now() -> datetime:
    return datetime.now(UTC)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM raises :class:`StepTerminated` in the main thread while the block runs (so the job is cancelled)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise StepTerminated(f"the training step got signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _cancel(runner, handle: str, job: TrainJob, timeout_s: float = 120.0) -> None:
    """Cancel ``handle`` and wait (bounded) until the scheduler reports it ended."""
    try:
        runner.cancel(handle)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = runner.status(handle)
            if status is None or status.is_terminal():
                return
            time.sleep(job.poll_s)
        log.warning("torchx job %s did not end within %.0f s of its cancellation", handle, timeout_s)
    except Exception:
        log.exception("could not cancel torchx job %s", handle)


def _cancel_orphan(runner, store: ObjectStore, lock: str, job: TrainJob, on_log: Callable[[str], None]) -> None:
    """Cancel the job an earlier attempt of this run left running (its handle is in the run's lock)."""
    if not store.exists(lock):
        return
    previous = json.loads(store.get_bytes(lock))["job"]
    try:
        status = runner.status(previous)
    except ValueError:  # a handle of a scheduler this runner does not know
        status = None
    if status is not None and not status.is_terminal():
        on_log(f"cancelling torchx job {previous} left running by an earlier attempt of this run")
        _cancel(runner, previous, job)
    store.delete(lock)


class _LogFollower(threading.Thread):
    """Streams one replica's log lines to ``on_line`` until the stream ends (the container stopped)."""

    def __init__(self, runner, handle: str, role: str, since: datetime | None, on_line: Callable[[str], None]):
        super().__init__(name=f"logs-{handle}", daemon=True)
        self.runner, self.handle, self.role, self.since, self.on_line = runner, handle, role, since, on_line

    def run(self) -> None:
        try:
            for line in self.runner.log_lines(self.handle, self.role, k=0, since=self.since, should_tail=True):
                self.on_line(line.rstrip("\n"))
        except Exception as e:  # a pod gone mid-stream (restart, eviction): the next poll follows its successor
            log.info("log stream of %s ended: %s", self.handle, e)


def _follow_job(runner, handle: str, role: str, job: TrainJob, training: TrainingSettings, on_line):
    """Poll the job until it ends; follow rank 0's logs whenever it runs; enforce the start and run deadlines."""
    started = time.monotonic()
    follower: _LogFollower | None = None
    followed_until: datetime | None = None
    ran = False
    while True:
        status = runner.status(handle)
        if status is None:
            raise TrainingFailed(f"training job {handle} disappeared from its scheduler")
        if status.is_terminal():
            break
        elapsed = time.monotonic() - started
        if status.state.name == "RUNNING":
            ran = True
            if follower is None or not follower.is_alive():  # first start, or a replica came back after a restart
                if follower is not None:
                    followed_until = _now()
                follower = _LogFollower(runner, handle, role, followed_until, on_line)
                follower.start()
        elif not ran and elapsed > training.job_start_timeout_s:
            raise TrainingFailed(
                f"training job {handle} did not start within training.job_start_timeout_s="
                f"{training.job_start_timeout_s:.0f} s (state {status.state.name}): no room in the queue, "
                "an image that cannot be pulled, or pods that cannot be scheduled"
            )
        if elapsed > training.job_timeout_s:
            raise TrainingFailed(
                f"training job {handle} did not finish within training.job_timeout_s={training.job_timeout_s:.0f} s"
            )
        time.sleep(job.poll_s)
    if follower is not None:
        follower.join(timeout=30)  # the last lines, written just before the job ended
    return status


def _local_env(env: dict[str, str], nproc: int) -> None:
    """This interpreter's torchrun first on PATH; the cores shared out between the local ranks."""
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, nproc))))


def fetch_benchmark(settings: Settings, uri: str, dest: Path) -> Path:
    """A benchmark folder: ``uri`` itself when local, else an s3:// prefix copied into ``dest``."""
    bucket, _ = parse_uri(uri)
    if bucket is None:
        return Path(uri)
    store = ObjectStore(settings.s3)
    prefix = uri.rstrip("/") + "/"
    count = 0
    for obj in store.list(prefix):
        target = dest / obj[len(prefix) :]
        target.parent.mkdir(parents=True, exist_ok=True)
        store.get_file(obj, target)
        count += 1
    if count == 0:
        raise ValueError(f"no benchmark images under {uri}")
    return dest


#: What the quality gate may compare against: the frozen baseline at the model's input size, the
#: published model, the benchmark's chance level. ``none`` keeps only the ``min_map`` floor.
GATE_REFERENCES = ("baseline", "published", "chance")


def parse_gate(gate: str) -> list[str]:
    """The references a gate names: comma-separated :data:`GATE_REFERENCES`, or ``none``."""
    names = [g.strip() for g in gate.split(",") if g.strip()]
    if names == ["none"]:
        return []
    unknown = [g for g in names if g not in GATE_REFERENCES]
    if unknown or not names:
        raise ValueError(f"gate {gate!r}: a comma-separated list of {', '.join(GATE_REFERENCES)}, or none")
    return names


def quality_gate(results: dict[str, Any], against: list[str], min_gain: float, min_map: float) -> dict[str, Any]:
    """The verdict on ``results`` (of :func:`evaluate_checkpoint`): mAP above every reference by more than
    ``min_gain``, and at least ``min_map``. A reference without a number (no published model) is skipped."""
    value = results["map"]
    references = {
        "baseline": (results.get("baseline") or {}).get("map"),
        "published": (results.get("published") or {}).get("map"),
        "chance": (results.get("chance") or {}).get("map"),
    }
    failures = [f"mAP {value:.4f} is below the floor min_map={min_map:.4f}"] if value < min_map else []
    for name in against:
        ref = references[name]
        if ref is not None and not value > ref + min_gain:
            failures.append(f"mAP {value:.4f} does not beat the {name} ({ref:.4f}) by more than {min_gain:.4f}")
    return {
        "against": against,
        "min_gain": min_gain,
        "min_map": min_map,
        "references": {k: references[k] for k in against},
        "passed": not failures,
        "failures": failures,
    }


def _kb_canonical(settings: Settings) -> Callable[[str], str] | None:
    """The knowledge base's canonical-id map when its file is here (benchmark entities -> training classes)."""
    from mofi.kb import KnowledgeBase
    from mofi_platform.services.ner.extractor import kb_path

    path = Path(kb_path(settings))
    return KnowledgeBase.load(path).canonical if path.is_file() else None


def _published(settings: Settings, store: ObjectStore, bench, version: str) -> dict[str, Any] | None:
    """The published embedder checkpoint's mAP on ``bench`` (None when nothing is published; no number
    when it is the candidate itself, as on a rerun)."""
    from mofi_platform.training.checkpoint import load_checkpoint
    from mofi_platform.training.evaluation import evaluate_model
    from mofi_platform.training.inference import EmbeddingModel

    uri = settings.embedder.checkpoint
    if not store.exists(uri):
        return None
    ckpt = load_checkpoint(store, uri)
    published = str(ckpt.get("version", uri))
    if published == version:
        return {"checkpoint": uri, "version": published, "map": None, "note": "the candidate itself"}
    found = evaluate_model(bench, EmbeddingModel.from_checkpoint(ckpt))
    return {"checkpoint": uri, "version": published, "map": found["map"], "image_size": found["image_size"]}


def evaluate_checkpoint(
    settings: Settings,
    checkpoint: str,
    benchmark: str,
    gate: str = "baseline,published",
    min_gain: float = 0.0,
    min_map: float = 0.0,
) -> dict[str, Any]:
    """Retrieval mAP (overall, per domain, seen/unseen), zero-shot and linear probe beside the frozen baseline
    at the checkpoint's input size, the chance level and (if the gate names it) the published model; the
    gate's verdict is ``results["gate"]`` (:func:`quality_gate`)."""
    from mofi_platform.training.checkpoint import load_checkpoint
    from mofi_platform.training.evaluation import load_benchmark
    from mofi_platform.training.references import evaluate_with_references

    against = parse_gate(gate)
    store = ObjectStore(settings.s3)
    with tempfile.TemporaryDirectory(prefix="mofi-benchmark-") as tmp:
        bench = load_benchmark(fetch_benchmark(settings, benchmark, Path(tmp)))
        results = evaluate_with_references(
            bench,
            load_checkpoint(store, checkpoint),
            store,
            settings.s3.models_uri("evaluation"),
            _kb_canonical(settings),
        )
        if "published" in against:
            results["published"] = _published(settings, store, bench, results["version"])
    results["benchmark"] = benchmark
    results["checkpoint"] = checkpoint
    results["gate"] = quality_gate(results, against, min_gain, min_map)
    verdict = "passed" if results["gate"]["passed"] else "FAILED: " + "; ".join(results["gate"]["failures"])
    log.info("quality gate against %s: %s", ", ".join(against) or "the floor only", verdict)
    return results


def published_uri(settings: Settings, version: str) -> str:
    """Where model ``version`` is published for serving: ``<training.checkpoint_dir>/serving/<version>.pt``."""
    return join_uri(settings.training.checkpoint_dir, "serving", re.sub(r"[^A-Za-z0-9._-]", "-", version) + ".pt")


def publish_checkpoint(settings: Settings, checkpoint: str) -> tuple[str, str]:
    """Publish ``checkpoint``'s weights (no optimizer state) at its version's immutable URI; (version, URI).

    A version is published once: a later call finds it and leaves it as it is, so every collection and every
    pinned ``settings.embedder.checkpoint`` that names the URI keeps meaning the same model (training runs keep
    only their last step checkpoints, so those URIs do not last).
    """
    from mofi_platform.training.checkpoint import load_checkpoint, save_checkpoint

    store = ObjectStore(settings.s3)
    state = load_checkpoint(store, checkpoint)
    version = str(state.get("version", checkpoint))
    uri = published_uri(settings, version)
    if store.exists(uri):
        log.info("model %s is already published at %s", version, uri)
    else:
        save_checkpoint(store, uri, {k: v for k, v in state.items() if k not in ("optimizer", "scheduler")})
        log.info("published %s (%s) at %s", checkpoint, version, uri)
    return version, uri


def index_checkpoint(settings: Settings, checkpoint: str, batch_size: int = 64, thumbnails: bool = True):
    """Publish ``checkpoint`` (:func:`publish_checkpoint`), embed every I2E image with it into a new collection
    that records that version and URI, and switch the alias to it: one step, one version id. Search then
    embeds queries on the alias with this model (the collection says so) whatever model the embedder serves."""
    from mofi_platform.services.embedder.indexing import index_images, items_from_i2e

    _, uri = publish_checkpoint(settings, checkpoint)
    store = ObjectStore(settings.s3)
    prefix = shards_prefix(settings)
    total = sum(read_manifest(store, shard)["count"] for shard in list_shards(store, prefix))
    return index_images(
        settings, items_from_i2e(store, prefix), uri, batch_size=batch_size, thumbnails=thumbnails, total=total
    )


def roll_embedder(settings: Settings, checkpoint: str, deployment: str = "", namespace: str = "") -> str:
    """Publish ``checkpoint`` (:func:`publish_checkpoint`) and make the embedder serve it where that is this
    step's to decide; returns the version.

    ``settings.embedder.checkpoint`` pinned to a published URI (the chart's value; ``helm rollback`` rolls the
    model back with it) is never rewritten: the step logs the value to pin. Only the explicit mutable choice
    (a ``latest.pt``) is overwritten, and then ``deployment`` (if named) restarts: embedder pods load the
    setting when they start, so a new pod-template annotation rolls them under the Deployment's strategy and
    PodDisruptionBudget. Without a deployment (a local run) the caller reloads its embedder (``kill -HUP``).
    """
    from mofi_platform.training.checkpoint import load_checkpoint, save_checkpoint

    version, uri = publish_checkpoint(settings, checkpoint)
    target = settings.embedder.checkpoint
    if target == uri:
        log.info("the embedder already serves %s (%s)", version, uri)
        return version
    if not target.endswith("/" + MUTABLE_CHECKPOINT) and target != MUTABLE_CHECKPOINT:
        log.warning(
            "the embedder serves the pinned %s; to serve %s pin its published URI: "
            "helm upgrade <release> charts/mofi --reuse-values --set settings.embedder.checkpoint=%s",
            target,
            version,
            uri,
        )
        return version
    store = ObjectStore(settings.s3)
    save_checkpoint(store, target, load_checkpoint(store, uri))
    log.info("copied %s (%s) to the mutable %s", uri, version, target)
    if deployment:
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        ns = namespace or _pod_namespace() or "default"
        patch = {
            "spec": {
                "template": {
                    "metadata": {
                        "annotations": {
                            CHECKPOINT_ANNOTATION: version,
                            "mofi.dev/rolled-at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        }
                    }
                }
            }
        }
        client.AppsV1Api().patch_namespaced_deployment(deployment, ns, patch)
        log.info("rolling deployment %s/%s to %s", ns, deployment, version)
    return version
