"""How big a demo run is, and the settings that keep a quick run apart from a full one.

Why apart from the steps: a plan is data (model, budget, data source) that the steps read; the
quick plan's own buckets, topics, collection and knowledge base are derived here in one place.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from mofi.settings import Settings

__all__ = ["DemoPlan", "PLANS", "demo_settings"]


@dataclass(frozen=True)
class DemoPlan:
    """How big the run is: ``full`` on the built corpus, ``quick`` on the committed fixture."""

    name: str
    fixture: bool
    min_count: int
    bootstrap_args: tuple[str, ...]
    pipeline: dict[str, Any] = field(default_factory=dict)
    #: A seeded subset of this many corpus pairs keeps the run in its budget (0: the whole corpus).
    data_pairs: int = 0
    #: Which subset (`mofi data build --subset`): ``dense`` spends the pairs on whole entities drawn by many
    #: sources, so the entity head sees each class many times (``random``: each source in proportion).
    data_subset: str = "random"


PLANS = {
    "full": DemoPlan(
        "full",
        fixture=False,
        min_count=3,
        bootstrap_args=("--epochs", "60", "--max-pairs", "2000"),
        data_pairs=7000,
        data_subset="dense",
        pipeline={
            "model_config": "mofi-effnet-lite0-minilm",
            "recipe": "multitask",
            # the cached-feature recipe (mofi_platform.training.feature_cache): the first six trunk stages
            # run once per image (plain + one augmented view), the last stage, conv head, projections and
            # entity head train for several epochs on the cache (RESULTS.md, "Cached-feature recipe")
            "steps": 300,
            "batch_size": 64,
            "train_options": json.dumps(
                {
                    "image_size": 128,
                    "context_length": 16,
                    "frozen_stages": 6,
                    "cache_views": 2,
                    "lr": 1e-3,
                    "tower_lr_scale": 0.3,
                    "warmup_steps": 20,
                    "checkpoint_every": 100,
                    # the pooled trunk features beside the projection (mofi_platform.training.embedding): on the
                    # demo's snapshot with a tenth of its entities held out of training, it retrieves those unseen
                    # entities better than the projection alone in each of three seeds (RESULTS.md)
                    "embedding": "pooled_projection",
                }
            ),
            # The model must beat the frozen ImageNet features at the same input size on the development
            # benchmark, or the run stops before indexing (RESULTS.md has the margin over three seeds).
            "gate": "baseline",
            "index_batch_size": 64,
        },
    ),
    "quick": DemoPlan(
        "quick",
        fixture=True,
        min_count=1,
        bootstrap_args=("--epochs", "20"),
        pipeline={
            "model_config": "mofi-tiny-vit",
            "recipe": "multitask",
            "steps": 12,
            "batch_size": 8,
            "train_options": json.dumps(
                {
                    "pretrained_towers": False,
                    "lr": 2e-3,
                    "tower_lr_scale": 1.0,
                    "warmup_steps": 2,
                    "checkpoint_every": 6,
                    "shuffle_buffer": 16,
                }
            ),
            # a tiny ViT trained from scratch for seconds is not expected to beat frozen ImageNet
            # features: the quick run gates against chance only (the report states the gate)
            "gate": "chance",
            "index_batch_size": 32,
        },
    ),
}


def demo_settings(settings: Settings, plan: DemoPlan) -> Settings:
    """The quick run gets its own buckets, topics, collection and data so it never mixes with the full one."""
    if not plan.fixture:
        return copy.deepcopy(settings)
    from mofi_platform.databuild.fixtures import fixture_kb_path

    s = settings.namespaced("quick")
    s.ner.kb_path = str(fixture_kb_path())
    return s
