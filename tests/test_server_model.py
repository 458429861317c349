"""The served PINN's ways to an answer: one contract alone, several in one batch, a large
batch split across threads."""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.model import KIND, NAME, load_pinn
from server.quotes import contract_rows, quote_half
from server.service import MIN_CHUNK_ROWS, run_split
from shared.artifact_store import ArtifactStore

MODELS = Path(__file__).resolve().parents[1] / "models"


@pytest.fixture(scope="module")
def model():
    return load_pinn(ArtifactStore(MODELS).load(KIND, NAME))


def contracts(n, seed):
    rng = np.random.default_rng(seed)
    level = 10.0 ** rng.uniform(-7, 11, n)  # the price levels the server accepts
    return [
        (float(s * lv), float(s * lv / m), float(t), float(r), float(v), float(q))
        for lv, s, m, t, r, v, q in zip(
            level, rng.uniform(50, 150, n), rng.uniform(0.8, 1.25, n), rng.uniform(0.05, 2, n),
            rng.uniform(0, 0.05, n), rng.uniform(0.1, 0.6, n), rng.uniform(0, 0.03, n),
            strict=True,
        )
    ]  # fmt: skip


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), batch=st.integers(2, 9), place=st.integers(0, 8))
def test_a_contract_alone_gets_the_same_bits_as_in_any_batch(model, seed, batch, place):
    batched = contracts(batch, seed)
    alone = model.quotes([batched[place % batch]])
    assert alone == [model.quotes(batched)[place % batch]]
    call, put = (quote_half(alone[0], is_put) for is_put in (0, 1))
    assert np.isfinite(call + put).all() and call[0] > 0 and put[0] > 0


def test_threads_sharing_the_single_contract_path_each_get_their_own_quote(model):
    work = contracts(400, seed=5)
    expected = [model.quotes([c])[0] for c in work]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda c: model.quotes([c])[0], work))
    assert got == expected


@pytest.mark.parametrize("parts", [1, 2, 3, 7])
def test_a_batch_split_across_threads_gets_the_same_bits_as_one_run(model, parts):
    rows = contract_rows(contracts(3 * MIN_CHUNK_ROWS // 2 + 3, seed=parts))  # not whole chunks
    with ThreadPoolExecutor(parts) as pool:
        split = asyncio.run(run_split(model, rows, pool, parts))
    assert np.array_equal(split, model.run(rows))
