"""Embedder test fixtures: two tiny-model checkpoints (two versions), small real images, a running server."""

from __future__ import annotations

import io
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from mofi.objstore import ObjectStore
from mofi.settings import S3Settings, Settings
from mofi.v1 import embedder_pb2_grpc
from mofi_platform.services.embedder.app import build_server
from mofi_platform.services.embedder.indexing import ImageItem, build_index
from mofi_platform.services.embedder.resources import load_holder
from mofi_platform.services.embedder.vectors import VectorStore
from mofi_platform.training import create_model_and_transforms
from mofi_platform.training.checkpoint import save_checkpoint

MODEL = "mofi-tiny-vit"
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]


def _checkpoint(path: Path, seed: int, version: str) -> str:
    torch.manual_seed(seed)
    model, _, _ = create_model_and_transforms(MODEL)
    save_checkpoint(
        ObjectStore(S3Settings()),
        str(path),
        {"model_name": MODEL, "model": model.state_dict(), "version": version, "image_size": None},
    )
    return str(path)


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    """{"a": uri, "b": uri}: same architecture, different weights and versions."""
    root = tmp_path_factory.mktemp("ckpt")
    return {"a": _checkpoint(root / "a.pt", 0, "tiny-a"), "b": _checkpoint(root / "b.pt", 1, "tiny-b")}


def png(colour: str, shape: str = "ellipse", size: int = 48) -> bytes:
    """A small real PNG: a coloured shape on white."""
    im = Image.new("RGB", (size, size), "white")
    getattr(ImageDraw.Draw(im), shape)((6, 6, size - 6, size - 6), fill=colour)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def image_items(n: int, source: str = "shapes") -> list[ImageItem]:
    """``n`` distinct images; entity ``colour:<name>`` on each, sources alternate ``source``/``other``."""
    items = []
    for i in range(n):
        colour, shape = COLOURS[i % len(COLOURS)], ("ellipse", "rectangle")[(i // len(COLOURS)) % 2]
        items.append(
            ImageItem(
                f"{source}{i:04d}",
                png(colour, shape),
                [f"colour:{colour}"],
                [colour],
                source if i % 2 == 0 else "other",
                f"a {colour} {shape}",
            )
        )
    return items


@pytest.fixture()
def emb_settings(tmp_path, checkpoints) -> Settings:
    s = Settings()
    s.embedder.checkpoint = checkpoints["a"]
    s.embedder.max_image_bytes = 64 * 1024
    s.embedder.max_pixels = 512 * 512
    s.embedder.max_top_k = 50
    s.embedder.max_wait_ms = 2.0
    s.milvus.uri = str(tmp_path / "milvus.db")
    s.milvus.collection = "images"
    s.grpc.max_message_bytes = 1024 * 1024
    return s


@pytest.fixture()
def holder(emb_settings):
    return load_holder(emb_settings)


@pytest.fixture()
def vectors(emb_settings):
    v = VectorStore(emb_settings.milvus.uri, emb_settings.milvus.collection)
    yield v
    v.close()


@pytest.fixture()
def indexed(holder, vectors) -> list[ImageItem]:
    items = image_items(12)
    build_index(holder, vectors, items, batch_size=5)
    return items


@pytest.fixture()
def server(emb_settings, holder, vectors):
    running = build_server(emb_settings, holder, vectors, port=0)
    yield running
    running.stop(1.0)


@pytest.fixture()
def channel(server):
    ch = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield ch
    ch.close()


@pytest.fixture()
def stubs(channel):
    return embedder_pb2_grpc.EmbedderStub(channel), embedder_pb2_grpc.SearchStub(channel)


def as_array(resp) -> np.ndarray:
    return np.array([list(e.values) for e in resp.embeddings], dtype=np.float32)
