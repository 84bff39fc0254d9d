"""Publishing a model: one immutable URI per version, which collections and a pinned embedder name; the roll
step never rewrites a pinned checkpoint, only the explicit mutable latest.pt."""

from __future__ import annotations

import logging

import torch

from mofi.objstore import ObjectStore
from mofi_platform.pipelines.steps import publish_checkpoint, published_uri, roll_embedder
from mofi_platform.training.checkpoint import load_checkpoint, save_checkpoint


def _train_checkpoint(store, uri: str, version: str, value: float) -> str:
    state = {"version": version, "model": {"w": torch.full((2,), value)}, "optimizer": {"state": 1}, "step": 3}
    save_checkpoint(store, uri, state)
    return uri


def test_a_version_is_published_once_at_its_own_uri(settings, store):
    models = f"s3://{settings.s3.models_bucket}"
    first = _train_checkpoint(store, f"{models}/mofi/run/step-3.pt", "run-step3", 1.0)
    version, uri = publish_checkpoint(settings, first)
    assert (version, uri) == ("run-step3", published_uri(settings, "run-step3"))
    assert uri == f"{settings.training.checkpoint_dir}/serving/run-step3.pt"
    published = load_checkpoint(store, uri)
    assert "optimizer" not in published and float(published["model"]["w"][0]) == 1.0
    # the run's step checkpoint is overwritten later (same name): the published model stays what it was
    _train_checkpoint(store, first, "run-step3", 2.0)
    assert publish_checkpoint(settings, first) == (version, uri)
    assert float(load_checkpoint(store, uri)["model"]["w"][0]) == 1.0


def test_roll_never_rewrites_a_pinned_checkpoint(settings, store, caplog):
    models = f"s3://{settings.s3.models_bucket}"
    old = _train_checkpoint(store, f"{models}/mofi/a/step-3.pt", "a-step3", 1.0)
    new = _train_checkpoint(store, f"{models}/mofi/b/step-3.pt", "b-step3", 2.0)
    _, pinned = publish_checkpoint(settings, old)
    settings.embedder.checkpoint = pinned
    with caplog.at_level(logging.WARNING):
        assert roll_embedder(settings, new) == "b-step3"
    assert float(load_checkpoint(store, pinned)["model"]["w"][0]) == 1.0  # the pinned model is untouched
    assert f"--set settings.embedder.checkpoint={published_uri(settings, 'b-step3')}" in caplog.text

    settings.embedder.checkpoint = f"{models}/mofi/latest.pt"  # the explicit mutable choice
    assert roll_embedder(settings, new) == "b-step3"
    served = load_checkpoint(store, settings.embedder.checkpoint)
    assert served["version"] == "b-step3" and "optimizer" not in served
    assert float(served["model"]["w"][0]) == 2.0
    assert ObjectStore(settings.s3).exists(published_uri(settings, "b-step3"))
