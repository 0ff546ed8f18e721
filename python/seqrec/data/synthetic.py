"""The built-in synthetic dataset: users walking item-to-item transitions inside latent clusters.

Items carry a Zipf popularity and belong to one of ``num_clusters`` latent clusters. Each item has a few
preferred successors in its own cluster. A user starts in a cluster and at every step either follows a
successor of the current item (``follow_prob``), picks a popular item of the same cluster (``stay_prob``) or
jumps to a popular item anywhere. Nobody consumes an item twice, as in the Amazon benchmarks. So the next
item is mostly predictable from the last one, which a sequence model learns and a popularity ranking cannot.
"""

from __future__ import annotations

import numpy as np

from seqrec.data.interactions import Interactions


def make_synthetic(
    num_users: int = 6000,
    num_items: int = 2000,
    num_clusters: int = 25,
    num_successors: int = 4,
    mean_length: float = 20.0,
    min_length: int = 5,
    max_length: int = 200,
    follow_prob: float = 0.75,
    stay_prob: float = 0.15,
    zipf: float = 0.9,
    seed: int = 0,
) -> Interactions:
    """Generates the dataset deterministically from ``seed``.

    Parameters
    ----------
    num_users, num_items : int
        Size of the population and the catalogue.
    num_clusters : int
        Latent clusters (tastes); successors stay within a cluster.
    num_successors : int
        Preferred next items per item, chosen with probabilities 0.4, 0.3, 0.2, 0.1 (for 4).
    mean_length, min_length, max_length : float, int, int
        Sequence length is ``min_length`` plus a geometric draw, capped at ``max_length``.
    follow_prob, stay_prob : float
        Probability of following a successor, and of picking a popular item of the same cluster;
        the rest of the time the user jumps to a popular item of any cluster.
    zipf : float
        Exponent of the item popularity law.
    seed : int
        Fixes everything.
    """
    if num_users < 1 or num_items < 2 or num_clusters < 1 or not 1 <= num_successors < num_items:
        raise ValueError("need num_users >= 1, num_items >= 2, num_clusters >= 1, 1 <= num_successors < num_items")
    if min_length < 1 or max_length < min_length or mean_length < min_length:
        raise ValueError("need 1 <= min_length <= mean_length and min_length <= max_length")
    if not (0 <= follow_prob and 0 <= stay_prob and follow_prob + stay_prob <= 1):
        raise ValueError("follow_prob and stay_prob must be probabilities summing to at most 1")
    rng = np.random.default_rng(seed)
    items = np.arange(1, num_items + 1)
    popularity, cluster = _catalogue(rng, num_items, num_clusters, zipf)
    members = [np.flatnonzero(cluster == c) for c in range(num_clusters)]
    members = [m if m.size else rng.choice(num_items, size=1) for m in members]
    cluster_cdf = [np.cumsum(popularity[m]) / popularity[m].sum() for m in members]
    global_cdf = np.cumsum(popularity)

    successor_probs = np.arange(num_successors, 0, -1, dtype=float)
    successor_probs /= successor_probs.sum()
    successors = np.empty((num_items, num_successors), dtype=np.int64)
    for i in range(num_items):
        pool = members[cluster[i]]
        pool = pool[pool != i]
        if pool.size < num_successors:
            pool = np.setdiff1d(np.arange(num_items), [i])
        p = popularity[pool] / popularity[pool].sum()
        successors[i] = rng.choice(pool, size=num_successors, replace=False, p=p)
    succ_cdf = np.cumsum(successor_probs)

    lengths = min_length + rng.geometric(1.0 / (mean_length - min_length + 1), size=num_users) - 1
    lengths = np.minimum(lengths, min(max_length, num_items))
    start_clusters = np.searchsorted(
        np.cumsum([popularity[m].sum() for m in members]), rng.random(num_users), side="right"
    ).clip(0, num_clusters - 1)

    out_users: list[int] = []
    out_items: list[int] = []
    for u in range(num_users):
        n = int(lengths[u])
        draws = rng.random((n, 3)).tolist()
        c = int(start_clusters[u])
        current = int(members[c][min(np.searchsorted(cluster_cdf[c], draws[0][1]), members[c].size - 1)])
        seen = {current}
        seq = [current]
        for step in range(1, n):
            r, a, b = draws[step]
            nxt = -1
            if r < follow_prob:
                nxt = int(successors[current, min(int(np.searchsorted(succ_cdf, a)), num_successors - 1)])
            elif r < follow_prob + stay_prob:
                c = int(cluster[current])
                nxt = int(members[c][min(int(np.searchsorted(cluster_cdf[c], a)), members[c].size - 1)])
            if nxt < 0 or nxt in seen:
                nxt = int(min(np.searchsorted(global_cdf, b), num_items - 1))
            while nxt in seen:  # rare: walk to the next unseen item
                nxt = (nxt + 1) % num_items
            seen.add(nxt)
            seq.append(nxt)
            current = nxt
        out_users.extend([u] * n)
        out_items.extend(seq)
    # Times come from a stream of their own so that adding them left the item sequences unchanged:
    # each user starts somewhere in a year and then waits an exponential gap (mean 2 days) per item.
    time_rng = np.random.default_rng([seed, 1])
    starts = time_rng.integers(1_600_000_000, 1_600_000_000 + 365 * 86400, size=num_users)
    gaps = time_rng.exponential(2 * 86400, size=len(out_items)).astype(np.int64)
    user_arr = np.asarray(out_users, dtype=np.int64)
    first = np.r_[True, user_arr[1:] != user_arr[:-1]]
    gaps[first] = 0
    cum = np.cumsum(gaps)
    timestamps = starts[user_arr] + cum - (cum - gaps)[first][np.cumsum(first) - 1]
    return Interactions.from_arrays(
        user_arr, items[np.asarray(out_items)], timestamps=timestamps, source=f"synthetic(seed={seed})"
    )


def _catalogue(rng: np.random.Generator, num_items: int, num_clusters: int, zipf: float) -> tuple[np.ndarray, np.ndarray]:
    """Item popularity (summing to 1) and cluster, in raw id order: the first draws of ``make_synthetic``."""
    popularity = 1.0 / np.arange(1, num_items + 1) ** zipf
    popularity = popularity[rng.permutation(num_items)]
    popularity /= popularity.sum()
    return popularity, rng.integers(num_clusters, size=num_items)


def synthetic_item_features(num_items: int = 2000, num_clusters: int = 25, zipf: float = 0.9,
                            seed: int = 0) -> dict[str, np.ndarray]:
    """Item features that carry the structure of ``make_synthetic`` with these arguments, as columns
    ``item_id`` (raw ids 1..num_items), ``cluster`` (a string category) and ``popularity`` (the log of the
    item's share of picks: what a price or a rating count tells on a real catalogue). Write them with
    ``pyarrow.csv`` or pandas and pass the file as ``data.item_features``: a cold-start run scores items it
    never trained on from them.
    """
    popularity, cluster = _catalogue(np.random.default_rng(seed), num_items, num_clusters, zipf)
    return {"item_id": np.arange(1, num_items + 1), "cluster": np.array([f"c{c}" for c in cluster]),
            "popularity": np.log(popularity)}
