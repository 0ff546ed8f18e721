"""Fuzzing the native entry points against a reference of what is valid: every input the generator knows to be
valid must succeed and keep the invariants; every invalid one must raise a clear Python error whose message
names what is wrong. Never a Rust panic (pyo3's PanicException), a crash, garbage, or a refusal of valid input.

Bounded (500 examples per test, no deadline) so that it runs in CI in seconds.
"""

import re

import numpy as np
import pytest
from conftest import require  # noqa: E402

require("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from seqrec._core import BatchBuilder, SequenceStore  # noqa: E402

FUZZ = settings(max_examples=500, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

Problem = tuple[type[Exception], str]  # the exception an invalid input must raise, and a regex of its message


def bad(option: str) -> Problem:
    return ValueError, option


# Python's own conversion of a negative int to an unsigned argument (epoch, max_tokens): raised before the
# engine runs, so the message does not name the argument.
NEGATIVE_UNSIGNED: Problem = (OverflowError, "can't convert negative int to unsigned")


def expect(problems: list[Problem], fn, *args, **kwargs):
    """``fn(*args, **kwargs)``: with no problems it must succeed (any exception fails the test, a panic
    included); otherwise it must raise one of the problems' exceptions with that problem's message."""
    if not problems:
        return fn(*args, **kwargs)
    with pytest.raises(tuple({kind for kind, _ in problems})) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert any(isinstance(info.value, kind) and re.search(pattern, message) for kind, pattern in problems), (
        f"{type(info.value).__name__}({message!r}) is none of the expected {problems}")
    return None


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


def user_lists(store_args, max_size: int = 5):
    """Users of the store, mostly in range (so that valid calls are common), sometimes not."""
    n = len(store_args[0]) - 1
    anyone = st.integers(-2, max(n, 0) + 2)
    return st.lists(st.one_of(st.integers(0, n - 1), st.integers(0, n - 1), anyone) if n > 0 else anyone,
                    max_size=max_size)


def store_problems(offsets: np.ndarray, items: np.ndarray, num_items: int) -> list[Problem]:
    """What is wrong with these CSR arrays, judged from the arrays themselves (a breakage can by chance
    leave them valid: items drawn in range, the last of several offsets cut off after an empty user)."""
    if offsets.dtype != np.int64:
        return [(TypeError, "type mismatch")]  # numpy arrays of the wrong dtype or rank fail conversion
    if items.ndim != 1:
        return [(TypeError, "dimensionality mismatch")]
    problems = []
    if num_items < 1:
        problems.append(bad("num_items must be positive"))
    if offsets.size == 0:
        return [*problems, bad("offsets is empty")]
    if offsets[0] != 0:
        problems.append(bad("first offset must be 0"))
    if (np.diff(offsets) < 0).any():
        problems.append(bad("offsets decrease"))
    if offsets[-1] != items.size:
        problems.append(bad(f"last offset {offsets[-1]} differs"))
    if ((items < 1) | (items > num_items)).any():
        problems.append(bad("item id -?[0-9]+ at position"))
    return problems


def histories(offsets: np.ndarray, items: np.ndarray) -> list[np.ndarray]:
    return [items[offsets[u] : offsets[u + 1]] for u in range(offsets.size - 1)]


def user_problems(users: np.ndarray, num_users: int) -> list[Problem]:
    return [bad("user index")] if ((users < 0) | (users >= num_users)).any() else []


def negative_problems(users: np.ndarray, hist: list[np.ndarray], num_items: int, popularity: bool,
                      sampled: list[bool]) -> list[Problem]:
    """Users no negative can be drawn for (valid users): they saw every item, or (popularity) every item they
    did not see has no interactions, hence weight 0; the latter only matters for users ``sampled`` draws for."""
    counts = np.bincount(np.concatenate([np.zeros(0, np.int64), *hist]).astype(np.int64), minlength=num_items + 1)
    problems = []
    for u, drawn in zip(users, sampled):
        unseen = np.setdiff1d(np.arange(1, num_items + 1), hist[u])
        if unseen.size == 0:
            problems.append(bad("has interacted with all"))
        elif popularity and drawn and counts[unseen].sum() == 0:
            problems.append(bad("sampling weight 0"))
    return problems


def builder_problems(num_items: int, counts_total: int, max_len: int, k: int, negatives: str, task: str,
                     mask_prob: float, num_in_batch: int = 1) -> list[Problem]:
    """What is wrong with these BatchBuilder options over a valid store."""
    problems = []
    if task not in ("sasrec", "bert4rec"):
        problems.append(bad("task: must be 'sasrec' or 'bert4rec'"))
    if k < 0:
        problems.append(bad("num_negatives: must be >= 0"))
    if negatives not in ("uniform", "popularity", "in_batch", "mixed", "none"):
        problems.append(bad("negatives: unknown mode"))
    elif negatives != "none":
        if num_items < 2:
            problems.append(bad("num_items: the catalogue has"))
        uniform_k, batch_k = {"mixed": (k, num_in_batch), "in_batch": (0, k)}.get(negatives, (k, 0))
        if k == 0 and uniform_k + batch_k == 0:
            problems.append(bad("num_negatives must be positive"))
        elif negatives == "mixed" and k == 0:
            problems.append(bad("mixed negatives: need"))
        if negatives == "popularity" and counts_total == 0:
            problems.append(bad("sampling weights sum to 0"))
    if max_len < 1:
        problems.append(bad("max_len must be positive"))
    if task == "bert4rec" and not 0 < mask_prob <= 1:  # NaN included
        problems.append(bad(r"mask_prob: must be in \(0, 1\]"))
    return problems


@FUZZ
@given(stores(), st.data(), st.integers(-1, 6), st.integers(-1, 3),
       st.sampled_from(["uniform", "popularity", "in_batch", "mixed", "none", "bogus"]),
       st.sampled_from(["sasrec", "bert4rec", "gpt"]), st.booleans(), st.booleans(),
       st.one_of(st.floats(0.05, 1.0), st.floats(0.05, 1.0), st.floats(-0.5, 1.5), st.just(float("nan"))),
       st.integers(0, 2**64 - 1))
def test_batch_builder_builds_valid_input_and_names_what_is_invalid(store_args, data, max_len, k, negatives, task,
                                                                    shared, pad, mask_prob, seed):
    store = expect(store_problems(*store_args), SequenceStore, *store_args)
    if store is None:
        return
    users = data.draw(user_lists(store_args))
    offsets, items, num_items = store_args
    builder = expect(builder_problems(num_items, items.size, max_len, k, negatives, task, mask_prob),
                     BatchBuilder, store, max_len, task=task, negatives=negatives, num_negatives=k, num_in_batch=1,
                     shared_negatives=shared, pad_to_max=pad, mask_prob=mask_prob, num_threads=1)
    if builder is None:
        return
    users_arr = np.array(users, dtype=np.int64)
    hist = histories(offsets, items)
    problems = user_problems(users_arr, len(hist))
    if not problems and negatives in ("uniform", "popularity", "mixed"):  # the samplers that exclude history
        has_target = [hist[u].size >= (2 if task == "sasrec" else 1) for u in users_arr]
        problems = negative_problems(users_arr, hist, num_items, negatives == "popularity", has_target)
    batch = expect(problems, builder.build, users_arr, seed=seed)
    if batch is None:
        return
    mask_token = num_items + 1
    assert batch["inputs"].shape[0] == users_arr.size
    assert batch["inputs"].shape[1] <= max_len
    inputs, targets = batch["inputs"], batch["targets"]
    assert inputs.min(initial=0) >= 0 and inputs.max(initial=0) <= mask_token
    assert targets.min(initial=0) >= 0 and targets.max(initial=0) <= num_items
    for row, u in enumerate(users_arr):
        history = set(hist[u].tolist())
        assert set(targets[row][targets[row] != 0].tolist()) <= history
        if "negatives" in batch and negatives in ("uniform", "popularity"):
            neg = batch["negatives"][row]  # (S, K): S = W, or 1 shared by the row
            live = targets[row] != 0 if neg.shape[0] == targets.shape[1] else np.array([targets[row].any()])
            assert (neg[~live] == 0).all()  # no target, no negatives
            drawn = set(neg[live].ravel().tolist())
            assert not drawn & history and all(1 <= x <= num_items for x in drawn)


@FUZZ
@given(stores(), st.data(), st.integers(-3, 30), st.integers(0, 2**64 - 1),
       st.one_of(st.floats(0.0, 3.0), st.floats(0.0, 3.0), st.floats(-1.0, 3.0), st.just(float("nan"))))
def test_store_samplers_draw_for_valid_input_and_name_what_is_invalid(store_args, data, n, seed, alpha):
    store = expect(store_problems(*store_args), SequenceStore, *store_args)
    if store is None:
        return
    users = data.draw(user_lists(store_args))
    users_arr = np.array(users, dtype=np.int64)
    offsets, items, num_items = store_args
    hist = histories(offsets, items)
    for popularity in (False, True):
        problems = []
        if popularity and not (np.isfinite(alpha) and alpha >= 0):
            problems.append(bad("alpha: must be finite and >= 0"))
        if popularity and items.size == 0:
            problems.append(bad("sampling weights sum to 0"))
        if n < 1:
            problems.append(bad("n must be positive"))
        problems += user_problems(users_arr, len(hist))
        if not problems:
            problems = negative_problems(users_arr, hist, num_items, popularity, [True] * users_arr.size)
        if popularity:
            out = expect(problems, store.popularity_negatives, users_arr, n, seed, alpha=alpha)
        else:
            out = expect(problems, store.uniform_negatives, users_arr, n, seed)
        if out is None:
            continue
        assert out.shape == (users_arr.size, n)
        for row, u in enumerate(users_arr):
            assert not set(out[row].tolist()) & set(hist[u].tolist())
            assert ((out[row] >= 1) & (out[row] <= num_items)).all()
    max_len = max(n, 0) % 7
    padded = expect(builder_problems(num_items, items.size, max_len, 1, "uniform", "sasrec", 0.2),
                    BatchBuilder, store, max_len, pad_to_max=True)
    if padded is not None:
        problems = user_problems(users_arr, len(hist))
        problems = problems or negative_problems(users_arr, hist, num_items, False, [True] * users_arr.size)
        batch = expect(problems, padded.build, users_arr, None, seed)
        if batch is not None:
            assert batch["inputs"].shape == (users_arr.size, max_len)  # padded to max_len, not to the longest


@FUZZ
@given(stores(), st.data(), st.one_of(st.integers(1, 4), st.integers(-1, 4)), st.one_of(st.integers(0, 3), st.integers(-1, 3)),
       st.one_of(st.integers(0, 40), st.integers(-1, 40)), st.booleans())
def test_epoch_planning_plans_valid_input_and_names_what_is_invalid(store_args, data, batch_size, epoch, max_tokens,
                                                                     bucket):
    store = expect(store_problems(*store_args), SequenceStore, *store_args)
    if store is None:
        return
    users = data.draw(user_lists(store_args, max_size=6))
    # Segment ends: mostly within each user's history (0..its length), sometimes not.
    lengths = np.diff(store_args[0])
    ends = [data.draw(st.one_of(st.integers(0, int(lengths[x])), st.integers(-2, 10)) if 0 <= x < lengths.size
                      else st.integers(-2, 10)) for x in users]
    offsets, items, num_items = store_args
    builder = expect(builder_problems(num_items, items.size, 4, 1, "uniform", "sasrec", 0.2),
                     BatchBuilder, store, 4, num_threads=1)
    if builder is None:
        return
    u = np.array(users, dtype=np.int64)
    e = np.array(ends, dtype=np.int64)
    hist = histories(offsets, items)
    if epoch < 0 or max_tokens < 0:
        problems = [NEGATIVE_UNSIGNED]  # before any value is looked at
    else:
        problems = user_problems(u, len(hist))
        if not problems and ((e < 0) | (e > np.array([hist[x].size for x in u], dtype=np.int64))).any():
            problems.append(bad("ends: end -?[0-9]+ of user"))
        if batch_size < 1:
            problems.append(bad("batch_size must be positive"))
    n = expect(problems, builder.num_batches, u, e, batch_size, 7, epoch, bucket=bucket, max_tokens=max_tokens)
    if not problems:  # building the batches also draws the (uniform, history-excluding) negatives
        problems = negative_problems(u, hist, num_items, False, [True] * u.size)
    batches = expect(problems, lambda: list(builder.epoch(u, e, batch_size, 7, epoch, bucket=bucket,
                                                          max_tokens=max_tokens)))
    if batches is not None:
        assert len(batches) == n
        assert sum(b["inputs"].shape[0] for b in batches) == u.size
        planned = [(int(x), int(y)) for b in batches for x, y in zip(b["users"], b["ends"])]
        assert sorted(planned) == sorted(zip(u.tolist(), e.tolist()))  # every segment once
    segments = expect(user_problems(u, len(hist)), builder.segments, u, max(epoch, 0))
    if segments is not None:
        assert set(segments[0].tolist()) <= set(u.tolist())


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
