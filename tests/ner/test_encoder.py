"""The context encoder's pass planning: every text once, within the memory cap, cheaper than fixed
chunks, and the same embeddings whichever passes a text lands in (padding is masked out)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from mofi_platform.services.ner.encoder import plan_passes
from mofi_platform.services.ner.evaluation import load_evalset
from tests.ner.conftest import EVALSET


def _cost(lengths, passes, pass_cost):
    return sum(pass_cost + len(p) * max(lengths[i] for i in p) for p in passes)


@pytest.mark.parametrize("seed", range(5))
def test_passes_cover_every_text_once_within_the_cap(seed):
    rng = random.Random(seed)
    lengths = [rng.choice([3, 5, 7, 8, 9, 12, 20, 48]) for _ in range(rng.randint(1, 200))]
    passes = plan_passes(lengths, 60, 256)
    assert sorted(i for p in passes for i in p) == list(range(len(lengths)))
    assert all(len(p) * max(lengths[i] for i in p) <= 256 for p in passes)


def test_passes_cost_less_than_fixed_chunks_of_sorted_texts():
    rng = random.Random(0)
    lengths = [rng.choice([4] * 10 + [6] * 20 + [8] * 20 + [11] * 5 + [48]) for _ in range(64)]
    order = sorted(range(64), key=lambda i: lengths[i])
    planned = _cost(lengths, plan_passes(lengths, 60, 4096), 60)
    for size in (1, 8, 16, 32, 64):
        fixed = [order[s : s + size] for s in range(0, 64, size)]
        assert planned < _cost(lengths, fixed, 60)


def test_edge_cases():
    assert plan_passes([], 60, 4096) == []
    assert plan_passes([48], 60, 16) == [[0]]  # one text longer than the cap still gets its own pass
    assert plan_passes([9, 2, 5], 0, 4096) == [[1], [2], [0]]  # no fixed cost: padding only costs


def test_embeddings_do_not_depend_on_pass_grouping(extractor):
    texts = [r.text for r in load_evalset(EVALSET)][:40]
    encoder = extractor.encoder
    together = encoder.encode(texts)
    alone = np.stack([encoder.encode([t])[0] for t in texts[:8]])
    np.testing.assert_allclose(together[:8], alone, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
