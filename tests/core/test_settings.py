import dataclasses

import pytest

from mofi.settings import (
    KafkaSettings,
    S3Settings,
    ScorerSettings,
    Settings,
    SettingsError,
    TrainingSettings,
    constraints,
    env_name,
    iter_fields,
    load_settings,
)


def test_defaults_env_and_file_precedence(tmp_path):
    cfg = tmp_path / "mofi.yaml"
    cfg.write_text("kafka:\n  pairs_topic: from-file\n  partitions: 7\nscorer:\n  threshold: 0.3\n")
    s = load_settings(cfg, env={"MOFI_KAFKA_PARTITIONS": "9", "MOFI_S3_SECURE": "true"})
    assert s.kafka.pairs_topic == "from-file"  # file beats default
    assert s.kafka.partitions == 9  # env beats file, coerced to int
    assert s.scorer.threshold == pytest.approx(0.3)
    assert s.s3.secure is True
    assert s.ner.port == Settings().ner.port  # untouched default


def test_toml_file_named_by_env(tmp_path):
    cfg = tmp_path / "mofi.toml"
    cfg.write_text('[milvus]\ncollection = "abc"\n')
    assert load_settings(env={"MOFI_CONFIG": str(cfg)}).milvus.collection == "abc"


@pytest.mark.parametrize(
    "env,needle",
    [
        ({"MOFI_KAFKA_PARTITIONS": "many"}, "MOFI_KAFKA_PARTITIONS"),
        ({"MOFI_KAFKA_PARTITONS": "3"}, "no such setting"),
        ({"MOFI_S3_SECURE": "perhaps"}, "bool"),
        ({"MOFI_STACK_BROKER_STORAGE": "disk"}, "not one of s3, memory"),
        ({"MOFI_MILVUS_INDEX_TYPE": "IVF"}, "not one of FLAT"),
        ({"MOFI_TRAINING_RECIPE": "selfsupervised"}, "not one of supervised"),
        ({"MOFI_KAFKA_PARTITIONS": "0"}, "below the minimum 1"),
        ({"MOFI_NER_PORT": "70000"}, "above the maximum 65535"),
        ({"MOFI_NER_LINK_THRESHOLD": "1.5"}, "MOFI_NER_LINK_THRESHOLD"),
        ({"MOFI_GRPC_GRACE_S": "-1"}, "below the minimum 0"),
    ],
)
def test_bad_values_and_typos_are_errors(env, needle):
    with pytest.raises(SettingsError, match=needle):
        load_settings(env=env)


def test_unknown_key_in_file_is_an_error(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("kafka:\n  bootstrap: x\n")
    with pytest.raises(SettingsError, match="unknown setting kafka.bootstrap"):
        load_settings(cfg, env={})


def test_to_env_round_trips_every_field():
    s = Settings()
    s.kafka.partitions = 11
    s.s3.secure = True
    env = s.to_env()
    assert len(env) == len(list(iter_fields(s)))
    assert load_settings(env=env) == s
    assert env_name("kafka", "bootstrap_servers") == "MOFI_KAFKA_BOOTSTRAP_SERVERS"
    assert all(doc for *_, doc in iter_fields(s)), "every setting is documented"


def test_json_object_settings(tmp_path):
    s = load_settings(
        env={"MOFI_MILVUS_INDEX_TYPE": "HNSW", "MOFI_MILVUS_INDEX_PARAMS": '{"M": 16, "efConstruction": 200}'}
    )
    assert s.milvus.index_params_dict() == {"M": 16, "efConstruction": 200}
    assert s.milvus.search_params_dict() == {}  # empty: the index type's defaults
    cfg = tmp_path / "mofi.yaml"  # a YAML mapping is kept as its JSON text
    cfg.write_text("milvus:\n  search_params:\n    ef: 64\n")
    assert load_settings(cfg, env={}).milvus.search_params_dict() == {"ef": 64}
    for bad, needle in (("{nlist: 3}", "not JSON"), ("[1, 2]", "JSON object")):
        s.milvus.index_params = bad
        with pytest.raises(SettingsError, match=needle):
            s.milvus.index_params_dict()


def test_ner_batching_settings():
    s = load_settings(env={"MOFI_NER_MAX_BATCH": "8", "MOFI_NER_MAX_WAIT_MS": "0.5"})
    assert (s.ner.max_batch, s.ner.max_wait_ms) == (8, 0.5)
    assert (Settings().ner.max_batch, Settings().ner.max_wait_ms) == (64, 2.0)


def test_endpoints_follow_the_local_stack_unless_set(tmp_path):
    s = Settings()
    assert (s.kafka.bootstrap_servers, s.s3.endpoint) == ("127.0.0.1:19092", "127.0.0.1:18333")
    assert (S3Settings().endpoint, KafkaSettings().bootstrap_servers) == (s.s3.endpoint, s.kafka.bootstrap_servers)
    moved = load_settings(env={"MOFI_STACK_KAFKA_PORT": "29092", "MOFI_STACK_S3_PORT": "28333"})
    assert (moved.kafka.bootstrap_servers, moved.s3.endpoint) == ("127.0.0.1:29092", "127.0.0.1:28333")
    assert moved.to_env()["MOFI_S3_ENDPOINT"] == "127.0.0.1:28333"  # a child process gets the resolved value
    env_wins = load_settings(env={"MOFI_STACK_KAFKA_PORT": "29092", "MOFI_KAFKA_BOOTSTRAP_SERVERS": "k:9092"})
    assert env_wins.kafka.bootstrap_servers == "k:9092"
    same_as_default = load_settings(env={"MOFI_S3_ENDPOINT": "127.0.0.1:18333", "MOFI_STACK_S3_PORT": "28333"})
    assert same_as_default.s3.endpoint == "127.0.0.1:18333"  # set explicitly, even to the default: it stays
    assert type(same_as_default.s3.endpoint) is str and not same_as_default.s3.is_derived("endpoint")
    assert Settings().s3.is_derived("endpoint")
    cfg = tmp_path / "mofi.yaml"
    cfg.write_text("s3:\n  endpoint: minio:9000\nstack:\n  s3_port: 28333\n")
    assert load_settings(cfg, env={}).s3.endpoint == "minio:9000"  # the file's explicit value wins
    assert load_settings(cfg, env={"MOFI_S3_ENDPOINT": ""}).s3.endpoint == "127.0.0.1:28333"  # empty: derived
    s.stack.kafka_port = 1234
    assert s.resolve().kafka.bootstrap_servers == "127.0.0.1:1234"
    s.kafka.bootstrap_servers = "explicit:1"
    s.stack.kafka_port = 4321
    assert s.resolve().kafka.bootstrap_servers == "explicit:1"


def test_checkpoints_follow_the_models_bucket_unless_set(tmp_path):
    s = Settings()
    assert s.scorer.checkpoint == "s3://mofi-models/clip/lit-bootstrap.pt"
    assert s.embedder.checkpoint == "s3://mofi-models/mofi/latest.pt"
    assert s.training.checkpoint_dir == "s3://mofi-models/mofi"
    assert ScorerSettings().checkpoint == s.scorer.checkpoint
    m = load_settings(env={"MOFI_S3_MODELS_BUCKET": "models-x"})
    assert (m.scorer.checkpoint, m.embedder.checkpoint, m.training.checkpoint_dir) == (
        "s3://models-x/clip/lit-bootstrap.pt",
        "s3://models-x/mofi/latest.pt",
        "s3://models-x/mofi",
    )
    assert m.scorer.checkpoint == m.s3.models_uri("clip/lit-bootstrap.pt")
    cfg = tmp_path / "mofi.toml"
    cfg.write_text('[s3]\nmodels_bucket = "models-x"\n[embedder]\ncheckpoint = "/ckpt/mofi.pt"\n')
    f = load_settings(cfg, env={"MOFI_SCORER_CHECKPOINT": "s3://other/clip.pt"})
    assert (f.scorer.checkpoint, f.embedder.checkpoint, f.training.checkpoint_dir) == (
        "s3://other/clip.pt",
        "/ckpt/mofi.pt",
        "s3://models-x/mofi",
    )


def test_namespaced_copy_renames_topics_buckets_groups_and_moves_uris():
    base = Settings()
    base.embedder.checkpoint = "s3://mofi-models/serving/latest.pt"  # explicit, inside the models bucket
    base.training.checkpoint_dir = "/local/runs"  # explicit, elsewhere
    s = base.namespaced("t1")
    assert (s.kafka.pairs_topic, s.kafka.dead_letter_topic) == ("mofi.pairs.v1.t1", "mofi.deadletter.v1.t1")
    assert (s.kafka.candidates_topic, s.kafka.i2e_topic) == ("mofi.candidates.v1.t1", "mofi.i2e.v1.t1")
    assert s.kafka.group_prefix == "mofi-t1" and s.milvus.collection == "mofi_images_t1"
    assert (s.s3.corpus_bucket, s.s3.i2e_bucket, s.s3.models_bucket) == (
        "mofi-corpus-t1",
        "mofi-i2e-t1",
        "mofi-models-t1",
    )
    assert s.scorer.checkpoint == "s3://mofi-models-t1/clip/lit-bootstrap.pt"  # derived: follows
    assert s.embedder.checkpoint == "s3://mofi-models-t1/serving/latest.pt"  # explicit in the bucket: moves
    assert s.training.checkpoint_dir == "/local/runs"
    assert base.kafka.pairs_topic == "mofi.pairs.v1" and base.s3.models_bucket == "mofi-models"  # a copy
    assert s.namespaced("q").scorer.checkpoint == "s3://mofi-models-t1-q/clip/lit-bootstrap.pt"


def test_for_local_stack_derives_endpoints_and_keeps_state_under_root(tmp_path):
    s = Settings.for_local_stack(
        tmp_path, kafka_port=20001, s3_port=20002, s3_internal_port_base=20010, broker_storage="memory"
    )
    assert (s.kafka.bootstrap_servers, s.s3.endpoint) == ("127.0.0.1:20001", "127.0.0.1:20002")
    assert (s.stack.data_dir, s.stack.s3_internal_port_base, s.stack.broker_storage) == (str(tmp_path), 20010, "memory")
    assert s.milvus.uri == str(tmp_path / "milvus.db")
    assert (s.data.cache_dir, s.data.build_dir) == (str(tmp_path / "cache"), str(tmp_path / "data"))
    assert load_settings(env=s.to_env()) == s


def test_constraints_apply_to_file_values_and_defaults_meet_them(tmp_path):
    cfg = tmp_path / "mofi.yaml"
    cfg.write_text("scorer:\n  threshold: 2.0\n")
    with pytest.raises(SettingsError, match="scorer.threshold"):
        load_settings(cfg, env={})
    s = Settings()
    checked = 0
    for sec in dataclasses.fields(s):
        for f in dataclasses.fields(getattr(s, sec.name)):
            limits, value = constraints(f), getattr(getattr(s, sec.name), f.name)
            checked += bool(limits)
            assert value in limits.get("enum", [value]), f"{sec.name}.{f.name}"
            assert limits.get("minimum", value) <= value <= limits.get("maximum", value), f"{sec.name}.{f.name}"
    assert checked > 30
    assert load_settings(env={"MOFI_GRPC_METRICS_PORT": "0", "MOFI_SCORER_THRESHOLD": "-1"}).grpc.metrics_port == 0


def test_recipe_choices_are_the_trainers_recipes():
    from mofi_platform.training.losses import RECIPES

    (recipe,) = [f for f in dataclasses.fields(TrainingSettings) if f.name == "recipe"]
    assert set(constraints(recipe)["enum"]) == set(RECIPES)


@pytest.mark.parametrize("fmt", ["table", "json", "env"])
def test_config_show_masks_credentials_unless_asked(monkeypatch, fmt):
    from click.testing import CliRunner

    from mofi.cli import main

    monkeypatch.setenv("MOFI_S3_SECRET_KEY", "very-secret-s3-key")
    monkeypatch.setenv("MOFI_MILVUS_TOKEN", "root:milvus-token-123")
    masked = CliRunner().invoke(main, ["config", "show", "--format", fmt])
    assert masked.exit_code == 0, masked.output
    assert "very-secret-s3-key" not in masked.output and "milvus-token-123" not in masked.output
    assert "********" in masked.output
    assert "MOFI_S3_ENDPOINT" in masked.output or "endpoint" in masked.output  # the rest is still shown
    clear = CliRunner().invoke(main, ["config", "show", "--format", fmt, "--show-secrets"])
    assert clear.exit_code == 0, clear.output
    assert "very-secret-s3-key" in clear.output and "milvus-token-123" in clear.output
