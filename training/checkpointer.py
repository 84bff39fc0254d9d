"""A run folder over a training run's life: resume from its newest checkpoint, save, prune, publish.

Why a module of its own: the checkpoint format (``mofi_platform.training.checkpoint``) says what one
checkpoint is; this says what a run does with them. Every rank resumes from the same checkpoint;
rank 0 alone writes ``<run_dir>/step-<N>.pt`` and the loss curve ``<run_dir>/metrics.jsonl``,
keeps the newest ``keep`` step checkpoints, and publishes the final one; the other ranks wait for
each save at a barrier so no rank runs ahead of a checkpoint that is not yet complete.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import torch.distributed as dist

from mofi.objstore import ObjectStore, join_uri
from mofi_platform.training.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    step_checkpoint_uri,
    step_checkpoints,
)

__all__ = ["Checkpointer", "metrics_uri", "read_metrics"]


def metrics_uri(run_dir: str) -> str:
    return join_uri(run_dir, "metrics.jsonl")


def read_metrics(store: ObjectStore, run_dir: str) -> list[dict[str, Any]]:
    uri = metrics_uri(run_dir)
    if not store.exists(uri):
        return []
    return [json.loads(line) for line in store.get_bytes(uri).decode().splitlines() if line.strip()]


#: Options that may differ between attempts of one run (how long, how often it saves, where it publishes).
RESUMABLE = frozenset(
    {"steps", "checkpoint_every", "keep_checkpoints", "publish_uri", "num_workers", "checkpoint_dir", "feature_cache"}
)


class Checkpointer:
    """Checkpoints of one run folder, as seen from rank ``rank`` of ``world``."""

    def __init__(self, store: ObjectStore, run_dir: str, keep: int, rank: int = 0, world: int = 1):
        self.store, self.run_dir, self.keep, self.rank, self.world = store, run_dir, keep, rank, world

    def resume(
        self, stateful: Mapping[str, Any], config: Mapping[str, Any] | None = None
    ) -> tuple[int, str, list[dict[str, Any]]]:
        """Load the newest checkpoint into ``stateful`` (checkpoint key -> object with ``load_state_dict``).

        Returns (step, checkpoint URI, metrics up to that step); (0, "", []) for a fresh run. With
        ``config`` (the run's flat options), a checkpoint trained with other settings is a ``ValueError``
        naming them (only ``RESUMABLE`` options may change between attempts): resuming it would hand back
        a model of another configuration as if it were this one.
        """
        found = latest_checkpoint(self.store, self.run_dir)
        if not found:
            return 0, "", []
        uri = found[1]
        ckpt = load_checkpoint(self.store, uri)
        if config is not None:
            saved = ckpt.get("config", {})
            changed = sorted(
                k for k in set(saved) | set(config) if k not in RESUMABLE and saved.get(k) != config.get(k)
            )
            if changed:
                diff = ", ".join(f"{k}: {saved.get(k)!r} -> {config.get(k)!r}" for k in changed)
                raise ValueError(
                    f"{self.run_dir} holds {uri} trained with other settings ({diff}); use another run name"
                )
        for key, obj in stateful.items():
            obj.load_state_dict(ckpt[key])
        step = int(ckpt["step"])
        return step, uri, [m for m in read_metrics(self.store, self.run_dir) if m["step"] <= step]

    def save(self, step: int, state: Callable[[], dict[str, Any]], metrics: list[dict[str, Any]]) -> str:
        """Write step ``step`` (``state()``, called on rank 0 only) and the metrics; prune; returns its URI."""
        uri = step_checkpoint_uri(self.run_dir, step)
        if self.rank == 0:
            save_checkpoint(self.store, uri, state())
            self.store.put_bytes(metrics_uri(self.run_dir), "".join(json.dumps(m) + "\n" for m in metrics).encode())
            older = step_checkpoints(self.store, self.run_dir)
            for _, old in older[: max(0, len(older) - max(1, self.keep))]:
                self.store.delete(old)
        if self.world > 1:
            dist.barrier()
        return uri

    def publish(self, uri: str, target: str) -> None:
        """Copy checkpoint ``uri`` to ``target`` (e.g. the embedder's ``latest.pt``); nothing when empty."""
        if self.rank == 0 and target:
            self.store.put_bytes(target, self.store.get_bytes(uri))
