"""Checkpoints in the object store (``s3://...`` or a local path), one object per save.

A checkpoint is a plain dict saved with ``torch.save`` and read back with ``weights_only=True``
(tensors, numbers, strings, lists and dicts only: loading never runs pickled code). Keys:

- ``model_name``: registered config name (``mofi_platform.training.models``); ``image_size``: input size override
  or None; ``model``: the model ``state_dict`` (with ``entity_head.weight`` when trained with classes)
- ``optimizer``, ``scheduler``: their ``state_dict``s (training checkpoints only)
- ``step``: optimisation steps done; ``classes``: the class table, a list of
  ``{"index", "id", "name", "description", "count"}``; ``config``: the training config as a dict
- ``version``: a string naming these weights (``<run>-step<N>``), reported by services

A run writes ``<run_dir>/step-<N>.pt``; resuming picks the highest N. Writes are whole-object,
so a run killed mid-save leaves the previous checkpoint as the latest complete one.
"""

from __future__ import annotations

import io
import re
from typing import Any

import torch

from mofi.objstore import ObjectStore, join_uri

__all__ = ["save_checkpoint", "load_checkpoint", "step_checkpoint_uri", "step_checkpoints", "latest_checkpoint"]

_STEP_NAME = re.compile(r"/step-(\d+)\.pt$")


def save_checkpoint(store: ObjectStore, uri: str, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    store.put_bytes(uri, buf.getvalue())


def load_checkpoint(store: ObjectStore, uri: str) -> dict[str, Any]:
    return torch.load(io.BytesIO(store.get_bytes(uri)), map_location="cpu", weights_only=True)


def step_checkpoint_uri(run_dir: str, step: int) -> str:
    return join_uri(run_dir, f"step-{step:09d}.pt")


def step_checkpoints(store: ObjectStore, run_dir: str) -> list[tuple[int, str]]:
    """(step, uri) of every step checkpoint under ``run_dir``, oldest first."""
    found = []
    for uri in store.list(run_dir.rstrip("/") + "/"):
        match = _STEP_NAME.search(uri)
        if match:
            found.append((int(match.group(1)), uri))
    return sorted(found)


def latest_checkpoint(store: ObjectStore, run_dir: str) -> tuple[int, str] | None:
    """(step, uri) of the newest step checkpoint under ``run_dir``, or None for a fresh run."""
    found = step_checkpoints(store, run_dir)
    return found[-1] if found else None
