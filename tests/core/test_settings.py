import pytest

from mofi.settings import Settings, SettingsError, env_name, iter_fields, load_settings


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
    s = load_settings(env={"MOFI_MILVUS_INDEX_TYPE": "HNSW",
                           "MOFI_MILVUS_INDEX_PARAMS": '{"M": 16, "efConstruction": 200}'})
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
