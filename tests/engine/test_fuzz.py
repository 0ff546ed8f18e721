"""Fuzzing the native entry points: any input, valid or not, gives a result that keeps the invariants or a
Python ValueError/TypeError/OverflowError; never a Rust panic (pyo3's PanicException), a crash or garbage.

Bounded (a few hundred examples per test, no deadline) so that it runs in CI in seconds.
"""

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from seqrec._core import BatchBuilder, SequenceStore  # noqa: E402

CLEAR_ERRORS = (ValueError, TypeError, OverflowError)
FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def call(fn, *args, **kwargs):
    """The result, or None for a clear Python error; anything else (a panic is a BaseException) fails."""
    try:
        return fn(*args, **kwargs)
    except CLEAR_ERRORS:
        return None
    except BaseException as e:  # noqa: BLE001 - PanicException derives from BaseException
        pytest.fail(f"{type(e).__module__}.{type(e).__name__}: {e}")


@st.composite
def stores(draw):
    """CSR arrays that are mostly valid, sometimes broken in one of the ways users break them."""
    breakage = draw(st.sampled_from(["none"] * 6 + ["decreasing", "short", "float", "2d", "offset0", "item",
                                                    "catalogue"]))
    num_items = draw(st.integers(1, 12)) if breakage != "catalogue" else draw(st.integers(-2, 0))
    lengths = draw(st.lists(st.integers(0, 8), min_size=0, max_size=6))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    top = num_items + 2 if breakage == "item" else max(num_items, 1)
    items = np.array(draw(st.lists(st.integers(-2 if breakage == "item" else 1, top), min_size=int(offsets[-1]),
                                   max_size=int(offsets[-1]))), dtype=np.int32)
    if breakage == "decreasing" and offsets.size > 2:
        offsets[1], offsets[2] = offsets[2] + 1, offsets[1]
    elif breakage == "short":
        offsets = offsets[:-1]
    elif breakage == "float":
        offsets = offsets.astype(np.float64)
    elif breakage == "2d":
        items = items.reshape(1, -1)
    elif breakage == "offset0" and offsets.size:
        offsets = offsets + 1
    return offsets, items, num_items


@FUZZ
@given(stores(), st.lists(st.integers(-2, 8), max_size=5), st.integers(-1, 6), st.integers(-1, 3),
       st.sampled_from(["uniform", "popularity", "in_batch", "mixed", "none", "bogus"]),
       st.sampled_from(["sasrec", "bert4rec", "gpt"]), st.booleans(), st.booleans(),
       st.one_of(st.floats(-0.5, 1.5), st.just(float("nan"))), st.integers(0, 2**64 - 1))
def test_batch_builder_never_panics(store_args, users, max_len, k, negatives, task, shared, pad, mask_prob, seed):
    store = call(SequenceStore, *store_args)
    if store is None:
        return
    builder = call(BatchBuilder, store, max_len, task=task, negatives=negatives, num_negatives=k, num_in_batch=1,
                   shared_negatives=shared, pad_to_max=pad, mask_prob=mask_prob, num_threads=1)
    if builder is None:
        return
    users_arr = np.array(users, dtype=np.int64)
    batch = call(builder.build, users_arr, seed=seed)
    if batch is None:
        return
    offsets, items, num_items = store_args
    mask_token = num_items + 1
    assert batch["inputs"].shape[0] == users_arr.size
    assert batch["inputs"].shape[1] <= max_len
    inputs, targets = batch["inputs"], batch["targets"]
    assert inputs.min(initial=0) >= 0 and inputs.max(initial=0) <= mask_token
    assert targets.min(initial=0) >= 0 and targets.max(initial=0) <= num_items
    for row, u in enumerate(users_arr):
        history = set(items[offsets[u] : offsets[u + 1]].tolist())
        assert set(targets[row][targets[row] != 0].tolist()) <= history
        if "negatives" in batch and negatives in ("uniform", "popularity"):
            drawn = set(batch["negatives"][row].ravel().tolist())
            assert not drawn & history and all(1 <= x <= num_items for x in drawn)


@FUZZ
@given(stores(), st.lists(st.integers(-2, 8), max_size=5), st.integers(-3, 30), st.integers(0, 2**64 - 1),
       st.one_of(st.floats(-1.0, 3.0), st.just(float("nan"))))
def test_store_samplers_never_panic(store_args, users, n, seed, alpha):
    store = call(SequenceStore, *store_args)
    if store is None:
        return
    users_arr = np.array(users, dtype=np.int64)
    offsets, items, num_items = store_args
    for fn, kwargs in ((store.uniform_negatives, {}), (store.popularity_negatives, {"alpha": alpha})):
        out = call(fn, users_arr, n, seed, **kwargs)
        if out is None:
            continue
        assert out.shape == (users_arr.size, n)
        for row, u in enumerate(users_arr):
            assert not set(out[row].tolist()) & set(items[offsets[u] : offsets[u + 1]].tolist())
            assert ((out[row] >= 1) & (out[row] <= num_items)).all()
    padded = call(BatchBuilder, store, max(n, 0) % 7, pad_to_max=True)
    if padded is not None:
        call(padded.build, users_arr, None, seed)


@FUZZ
@given(stores(), st.lists(st.integers(-2, 8), max_size=6), st.lists(st.integers(-2, 10), max_size=6),
       st.integers(-1, 4), st.integers(-1, 3), st.integers(-1, 40), st.booleans())
def test_epoch_planning_never_panics(store_args, users, ends, batch_size, epoch, max_tokens, bucket):
    store = call(SequenceStore, *store_args)
    if store is None:
        return
    builder = call(BatchBuilder, store, 4, num_threads=1)
    if builder is None:
        return
    u = np.array(users, dtype=np.int64)
    e = np.array(ends[: len(users)] + [1] * max(0, len(users) - len(ends)), dtype=np.int64)
    n = call(builder.num_batches, u, e, batch_size, 7, epoch, bucket=bucket, max_tokens=max_tokens)
    batches = call(lambda: list(builder.epoch(u, e, batch_size, 7, epoch, bucket=bucket, max_tokens=max_tokens)))
    if n is not None and batches is not None:
        assert len(batches) == n
        assert sum(b["inputs"].shape[0] for b in batches) == u.size
    call(builder.segments, u, max(epoch, 0))


HUGE = st.sampled_from([2**31 + 1, 2**40, 2**58, 2**62, 10**10])


@FUZZ
@given(HUGE, st.sampled_from(["batch_size", "prefetch", "num_negatives", "max_len", "pool_size", "n",
                              "num_items", "stride", "max_tokens"]))
def test_huge_sizes_are_clear_errors_not_aborts(value: int, option: str) -> None:
    """Sizes far beyond memory (the probes of issue 14) give a ValueError naming the option, never a panic, an
    abort or an attempt to allocate them; windows longer than a history end instead of looping."""
    offsets = np.array([0, 60, 63], dtype=np.int64)
    items = (np.arange(63) % 40 + 1).astype(np.int32)
    if option == "num_items":
        with pytest.raises(ValueError, match="num_items"):
            SequenceStore(offsets, items, value)
        return
    store = SequenceStore(offsets, items, 50)
    users, ends = np.array([0, 1], dtype=np.int64), np.array([60, 3], dtype=np.int64)
    if option == "n":
        with pytest.raises(ValueError, match="n: "):
            store.uniform_negatives(users, value)
        return
    if option == "stride":  # a window stride longer than the history: one segment, no endless loop
        u, e = BatchBuilder(store, 50).segments(np.array([0], dtype=np.int64), 61)
        assert e.tolist() == [60]
        return
    kwargs = {"max_len": value} if option == "max_len" else {}
    if option in ("num_negatives", "pool_size"):
        kwargs[option] = value
    if kwargs:
        with pytest.raises(ValueError, match=option if option != "pool_size" else "negative_pool"):
            BatchBuilder(store, kwargs.pop("max_len", 10), **kwargs)
        return
    builder = BatchBuilder(store, 10)
    args = {"batch_size": 4, "prefetch": 2, "max_tokens": 0, option: value}
    with pytest.raises(ValueError, match=option):
        list(builder.epoch(users, ends, args["batch_size"], 0, 0, prefetch=args["prefetch"],
                           max_tokens=args["max_tokens"]))
