"""The nine EvalRS 2022 metrics against a slow per-user oracle written from the spec text.

The oracle below (``oracle_metrics``) follows ``../shared/spec/evalrs2022.md`` sections 3-4
with plain Python loops, dicts and ``math``; it shares no code with
``tripletlit.evaluation.metrics``. Every case compares all nine metrics (abs tol 1e-9,
NaN == NaN) and, for some, the per-slice miss rates too.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tripletlit.data.folds import FoldConfig, make_fold
from tripletlit.errors import TripletlitError
from tripletlit.evaluation.metrics import (
    METRICS,
    being_less_wrong,
    check_predictions,
    compute_metrics,
    fold_slices,
)
from tripletlit.evaluation.vectors import TrackVectors

K = 100
TOL = 1e-9

# ---------------------------------------------------------------------------------------------
# The oracle: spec section 4, one user at a time.
# ---------------------------------------------------------------------------------------------

SPEC_COUNTRIES = {"US", "RU", "DE", "UK", "PL", "BR", "FI", "NL", "ES", "SE", "UA", "CA", "FR", "NaN"}
SPEC_GENDERS = {"f", "m", "n"}
ACTIVITY_EDGES = [1, 100, 1000]
TRACK_EDGES = [1, 10, 100, 1000]
ARTIST_EDGES = [1, 100, 1000, 10000]
BIN_NAMES = {
    "MRED_USER_ACTIVITY": ["<1", "[1,100)", "[100,1000)", ">=1000"],
    "MRED_TRACK_POPULARITY": ["<1", "[1,10)", "[10,100)", "[100,1000)", ">=1000"],
    "MRED_ARTIST_POPULARITY": ["<1", "[1,100)", "[100,1000)", "[1000,10000)", ">=10000"],
}


def _is_missing(value) -> bool:
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def _digitize(value, edges) -> int:
    """np.digitize for increasing edges: how many edges are <= value."""
    return sum(1 for edge in edges if value >= edge)


def _mean(values):
    values = list(values)
    return math.fsum(values) / len(values) if values else float("nan")


def _cos(a, b) -> float:
    dot = math.fsum(x * y for x, y in zip(a, b))
    na = math.sqrt(math.fsum(x * x for x in a))
    nb = math.sqrt(math.fsum(y * y for y in b))
    return dot / (na * nb)


def _oracle_mred(entries):
    """entries: list of (slice key or None, miss). Returns (MRED, {key: (users, miss rate)})."""
    if not entries:
        return float("nan"), {}
    overall = _mean(m for _, m in entries)
    groups: dict = {}
    for key, m in entries:
        if key is not None:
            groups.setdefault(key, []).append(m)
    if not groups:
        return float("nan"), {}
    rates = {key: _mean(ms) for key, ms in groups.items()}
    value = -_mean(abs(rate - overall) for rate in rates.values())
    return value, {key: (len(groups[key]), rates[key]) for key in groups}


def oracle_metrics(train, test, users, tracks, predictions, vectors=None):
    """All nine metrics and the per-slice (users, miss rate), straight from the spec text.

    ``predictions``: one list of K track ids per test row (test order); ``vectors``: a dict
    track id -> tuple of floats, or None (then BLW and LD are NaN).
    """
    activity: dict = {}
    track_plays: dict = {}
    artist_plays: dict = {}
    for u, a, t, c in zip(
        train["user_id"].tolist(), train["artist_id"].tolist(), train["track_id"].tolist(),
        train["user_track_count"].tolist(),
    ):  # fmt: skip
        activity[u] = activity.get(u, 0) + c
        track_plays[t] = track_plays.get(t, 0) + c
        artist_plays[a] = artist_plays.get(a, 0) + c
    country_of, gender_of = {}, {}
    for u, c, g in zip(users["user_id"].tolist(), users["country"].tolist(), users["gender"].tolist()):
        country_of[u] = c
        gender_of[u] = g
    artist_of = dict(zip(tracks["track_id"].tolist(), tracks["artist_id"].tolist()))

    hits, rrs = [], []
    country_entries, gender_entries, all_entries = [], [], []
    activity_entries, track_entries, artist_entries = [], [], []
    blw, ld = [], []
    for row, (u, g) in enumerate(zip(test["user_id"].tolist(), test["track_id"].tolist())):
        preds = [int(x) for x in predictions[row]]
        assert len(preds) == K
        rank = preds.index(g) + 1 if g in preds else None
        hit = 1 if rank is not None else 0
        miss = 1 - hit
        hits.append(hit)
        rrs.append(1.0 / rank if rank is not None else 0.0)
        all_entries.append(miss)

        country = country_of.get(u)
        country = "NaN" if _is_missing(country) else country
        if country in SPEC_COUNTRIES:
            country_entries.append((country, miss))
        gender = gender_of.get(u)
        gender_entries.append((gender if not _is_missing(gender) and gender in SPEC_GENDERS else None, miss))
        activity_entries.append((_digitize(activity.get(u, 0), ACTIVITY_EDGES), miss))
        track_entries.append((_digitize(track_plays.get(g, 0), TRACK_EDGES), miss))
        artist_entries.append((_digitize(artist_plays.get(artist_of[g], 0), ARTIST_EDGES), miss))

        if vectors is not None:
            top1 = preds[0]
            if miss and top1 != -1 and top1 in vectors and g in vectors:
                blw.append(_cos(vectors[g], vectors[top1]))
            in_vocab = [vectors[t] for t in preds[:20] if t != -1 and t in vectors]
            if in_vocab and g in vectors:
                m = [math.fsum(v[d] for v in in_vocab) for d in range(len(in_vocab[0]))]
                diversity = _mean(1.0 - _cos(m, v) for v in in_vocab)
                bias = 1.0 - _cos(m, vectors[g])
                ld.append(0.3 * diversity - 0.7 * bias)

    out, slices = {}, {}
    out["HIT_RATE"] = _mean(hits)
    out["MRR"] = _mean(rrs)
    out["MRED_COUNTRY"], slices["MRED_COUNTRY"] = _oracle_mred(country_entries)
    for name, entries in (
        ("MRED_USER_ACTIVITY", activity_entries),
        ("MRED_TRACK_POPULARITY", track_entries),
        ("MRED_ARTIST_POPULARITY", artist_entries),
    ):
        value, detail = _oracle_mred(entries)
        out[name] = value
        slices[name] = {BIN_NAMES[name][b]: v for b, v in detail.items()}
    out["MRED_GENDER"], slices["MRED_GENDER"] = _oracle_mred(gender_entries)
    out["BEING_LESS_WRONG"] = _mean(blw)
    out["LATENT_DIVERSITY"] = _mean(ld)
    return out, slices


# ---------------------------------------------------------------------------------------------
# Random worlds
# ---------------------------------------------------------------------------------------------

LISTED = ["US", "RU", "DE", "UK", "PL", "BR", "FI", "NL", "ES", "SE", "UA", "CA", "FR"]
UNLISTED = ["IT", "JP", "AU"]


def make_world(
    seed=0,
    n_users=60,
    n_tracks=300,
    n_artists=40,
    hit_share=0.5,
    countries=tuple(LISTED[:5]) + (None, "IT", "JP"),
    genders=("f", "m", "n", None),
    pad_share=0.2,
    vocab_share=0.8,
    dim=6,
):
    """A small random world: tables, a fold, predictions (lists of K ids) and vectors.

    ``hit_share`` of the users get their target at a uniformly random rank; ``pad_share`` of
    the users get a random number of trailing -1; ``vocab_share`` of the tracks have vectors.
    """
    rng = np.random.default_rng(seed)
    track_ids = rng.choice(np.arange(10, 10 * n_tracks + 10), size=n_tracks, replace=False)
    artist_ids = rng.choice(np.arange(1, 5 * n_artists + 1), size=n_artists, replace=False)
    # skewed artists so that artist popularity spans several bins
    weights = 1.0 / np.arange(1, n_artists + 1)
    track_artist = rng.choice(artist_ids, size=n_tracks, p=weights / weights.sum())
    tracks = pd.DataFrame({"track_id": track_ids, "artist_id": track_artist, "track": [f"t{t}" for t in track_ids]})
    artist_of = dict(zip(track_ids.tolist(), track_artist.tolist()))

    user_ids = rng.choice(np.arange(1, 100 * n_users), size=n_users, replace=False)
    users = pd.DataFrame(
        {
            "user_id": user_ids,
            "country": [countries[i] for i in rng.integers(0, len(countries), n_users)],
            "gender": [genders[i] for i in rng.integers(0, len(genders), n_users)],
            "age": -1,
        }
    )
    rows = []
    for u in user_ids.tolist():
        n_rows = int(rng.integers(0, 25))  # some users have no training rows at all
        for t in rng.choice(track_ids, size=n_rows, replace=False).tolist():
            count = int(math.exp(rng.uniform(0, 6.5)))  # 1 .. ~660 plays, heavy-tailed
            rows.append((u, artist_of[t], 1, t, 1_600_000_000, count))
    train = pd.DataFrame(
        rows, columns=["user_id", "artist_id", "album_id", "track_id", "timestamp", "user_track_count"]
    )
    order = rng.permutation(n_users)  # test rows not sorted by user
    test = pd.DataFrame({"user_id": user_ids[order], "track_id": rng.choice(track_ids, size=n_users)})

    predictions = []
    for g in test["track_id"].tolist():
        others = rng.choice(track_ids[track_ids != g], size=K, replace=False).tolist()
        if rng.random() < hit_share:
            others[int(rng.integers(0, K))] = g
        if rng.random() < pad_share:
            n_pad = int(rng.integers(1, K + 1))
            others = others[: K - n_pad] + [-1] * n_pad  # the target may be cut off: a miss
        predictions.append(others)

    in_vocab = track_ids[rng.random(n_tracks) < vocab_share]
    vecs = rng.normal(size=(len(in_vocab), dim)).astype(np.float32)
    vectors = {int(t): tuple(float(x) for x in v) for t, v in zip(in_vocab, vecs)}
    return {"train": train, "test": test, "users": users, "tracks": tracks, "predictions": predictions, "vectors": vectors}


def track_vectors(vectors: dict, dim: int = 6) -> TrackVectors:
    ids = list(vectors)
    if not ids:
        return TrackVectors.from_mapping(np.zeros(0, np.int64), np.zeros((0, dim), np.float32))
    return TrackVectors.from_mapping(ids, np.array([vectors[t] for t in ids], dtype=np.float32))


def run_code(world, vectors="world"):
    vectors = world["vectors"] if vectors == "world" else vectors
    fold = fold_slices(world["train"], world["test"], world["users"], world["tracks"])
    tv = None if vectors is None else track_vectors(vectors)
    return compute_metrics(np.asarray(world["predictions"]), fold, tv)


def run_oracle(world, vectors="world"):
    vectors = world["vectors"] if vectors == "world" else vectors
    return oracle_metrics(world["train"], world["test"], world["users"], world["tracks"], world["predictions"], vectors)


def same(a: float, b: float, tol: float = TOL) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tol


def assert_metrics_match(got: dict, want: dict, tol: float = TOL):
    assert list(got) == list(METRICS)
    bad = {m: (got[m], want[m]) for m in METRICS if not same(got[m], want[m], tol)}
    assert not bad, f"code vs oracle (got, want): {bad}"


def assert_slices_match(got: dict, want: dict):
    for name, expected in want.items():
        actual = {key: (v["users"], v["miss_rate"]) for key, v in got[name].items()}
        assert set(actual) == set(expected), name
        for key, (n, rate) in expected.items():
            assert actual[key][0] == n, (name, key)
            assert same(actual[key][1], rate), (name, key, actual[key][1], rate)


def check_world(world, vectors="world", slices=False):
    result = run_code(world, vectors)
    want, want_slices = run_oracle(world, vectors)
    assert_metrics_match(result["metrics"], want)
    if slices:
        assert_slices_match(result["slices"], want_slices)
    return result, want


# ---------------------------------------------------------------------------------------------
# Oracle vs code
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("hit_share", [0.1, 0.5, 0.9])
def test_random_world_matches_oracle(seed, hit_share):
    world = make_world(seed=seed, hit_share=hit_share)
    result, want = check_world(world, slices=True)
    assert 0 < want["HIT_RATE"] < 1 or hit_share != 0.5
    assert result["users"] == len(world["test"])
    assert same(result["miss_rate"], 1 - want["HIT_RATE"])


def test_world_exercises_every_rule():
    """The default world really has misses and hits in several bins, pads and OOV tracks."""
    world = make_world(seed=1)
    _, slices = run_oracle(world)
    for name in ("MRED_USER_ACTIVITY", "MRED_TRACK_POPULARITY", "MRED_ARTIST_POPULARITY"):
        assert len(slices[name]) >= 3, (name, slices[name])
    assert "NaN" in slices["MRED_COUNTRY"]
    assert any(-1 in p for p in world["predictions"])
    all_tracks = set(world["tracks"]["track_id"].tolist())
    assert all_tracks - set(world["vectors"])


def test_without_vectors_blw_and_ld_are_nan():
    world = make_world(seed=2)
    result, want = check_world(world, vectors=None)
    assert math.isnan(result["metrics"]["BEING_LESS_WRONG"]) and math.isnan(result["metrics"]["LATENT_DIVERSITY"])
    assert result["stand_in"] is None


def test_misses_everywhere():
    world = make_world(seed=3, hit_share=0.0)
    result, want = check_world(world, slices=True)
    m = result["metrics"]
    assert m["HIT_RATE"] == 0 and m["MRR"] == 0
    for name in METRICS[2:7]:
        assert m[name] == 0, name


def test_hits_everywhere_mreds_exactly_zero():
    world = make_world(seed=4, hit_share=1.0, pad_share=0.0)
    result, want = check_world(world, slices=True)
    m = result["metrics"]
    assert m["HIT_RATE"] == 1.0
    for name in METRICS[2:7]:
        assert m[name] == 0, name
    assert math.isnan(m["BEING_LESS_WRONG"])  # no missed user


def test_target_first_gives_mrr_one():
    world = make_world(seed=5, hit_share=0.0, pad_share=0.0)
    world["predictions"] = [[g] + p[:-1] for g, p in zip(world["test"]["track_id"].tolist(), world["predictions"])]
    result, _ = check_world(world)
    assert result["metrics"]["HIT_RATE"] == 1.0 and result["metrics"]["MRR"] == 1.0


def test_missing_countries_form_the_nan_slice():
    world = make_world(seed=6, countries=("US", None, "DE"))
    result, _ = check_world(world, slices=True)
    assert "NaN" in result["slices"]["MRED_COUNTRY"]
    world = make_world(seed=6, countries=(None,))
    result, _ = check_world(world, slices=True)
    assert set(result["slices"]["MRED_COUNTRY"]) == {"NaN"}
    assert result["metrics"]["MRED_COUNTRY"] == 0


def test_users_outside_the_country_list():
    world = make_world(seed=7, hit_share=0.3, pad_share=0.0, countries=("US", "UK", None, "IT", "JP"))
    before, _ = check_world(world, slices=True)
    assert not {"IT", "JP"} & set(before["slices"]["MRED_COUNTRY"])
    # turn every missed IT/JP user into a hit: HIT_RATE rises, MRED_COUNTRY does not move
    country = dict(zip(world["users"]["user_id"].tolist(), world["users"]["country"].tolist()))
    flipped = 0
    for row, (u, g) in enumerate(zip(world["test"]["user_id"].tolist(), world["test"]["track_id"].tolist())):
        if country[u] in ("IT", "JP") and g not in world["predictions"][row]:
            world["predictions"][row] = [g] + world["predictions"][row][:-1]
            flipped += 1
    assert flipped > 0
    after, _ = check_world(world, slices=True)
    assert after["metrics"]["HIT_RATE"] > before["metrics"]["HIT_RATE"]
    assert after["metrics"]["MRED_COUNTRY"] == before["metrics"]["MRED_COUNTRY"]
    assert after["slices"]["MRED_COUNTRY"] == before["slices"]["MRED_COUNTRY"]


def test_only_unlisted_countries_give_nan_country_mred():
    world = make_world(seed=8, countries=("IT", "JP"))
    result, want = check_world(world)
    assert math.isnan(want["MRED_COUNTRY"])


def test_all_users_in_one_slice():
    """One country, one gender, one bin of every popularity: all five MREDs are 0."""
    rng = np.random.default_rng(9)
    n = 50
    user_ids = np.arange(100, 100 + n)
    track_ids = np.arange(1000, 1300)
    tracks = pd.DataFrame({"track_id": track_ids, "artist_id": 7})
    users = pd.DataFrame({"user_id": user_ids, "country": "US", "gender": "m"})
    # every user played track 1000 200 times: activity 200; artist 7 has 200 * n >= 10000 plays
    train = pd.DataFrame(
        {"user_id": user_ids, "artist_id": 7, "album_id": 1, "track_id": 1000, "timestamp": 0, "user_track_count": 200}
    )
    test = pd.DataFrame({"user_id": user_ids, "track_id": rng.choice(track_ids[1:], n, replace=False)})  # never trained
    predictions = []
    for i, g in enumerate(test["track_id"].tolist()):
        p = rng.choice(track_ids[track_ids != g], K, replace=False).tolist()
        if i % 3 == 0:
            p[int(rng.integers(0, K))] = g
        predictions.append(p)
    world = {"train": train, "test": test, "users": users, "tracks": tracks, "predictions": predictions, "vectors": None}
    result, want = check_world(world, vectors=None, slices=True)
    for name in METRICS[2:7]:
        assert result["metrics"][name] == 0, name
        assert len(result["slices"][name]) == 1, name
    assert 0 < result["metrics"]["HIT_RATE"] < 1


def test_minus_one_padding():
    world = make_world(seed=10, pad_share=1.0)
    # extreme rows: a user with 5 real tracks, a user with none at all (top-1 is -1)
    world["predictions"][0] = world["predictions"][0][:5] + [-1] * (K - 5)
    world["predictions"][1] = [-1] * K
    result, want = check_world(world, slices=True)
    assert any(p.count(-1) > 1 for p in world["predictions"])


def test_vocabulary_missing_tracks():
    world = make_world(seed=11, vocab_share=0.3)
    check_world(world)
    # a vocabulary without any target: BLW and LD have nobody to average
    targets = set(world["test"]["track_id"].tolist())
    no_targets = {t: v for t, v in world["vectors"].items() if t not in targets}
    result, want = check_world(world, vectors=no_targets)
    assert math.isnan(result["metrics"]["BEING_LESS_WRONG"]) and math.isnan(result["metrics"]["LATENT_DIVERSITY"])


def test_vocabulary_of_only_the_targets():
    """Prediction tracks out of vocabulary (except hits) skip users in LD and BLW."""
    world = make_world(seed=12, hit_share=0.5)
    targets = set(world["test"]["track_id"].tolist())
    only = {t: v for t, v in world["vectors"].items() if t in targets}
    check_world(world, vectors=only)


def test_empty_vocabulary_gives_nan_blw_and_ld():
    world = make_world(seed=15)
    result, want = check_world(world, vectors={})
    assert math.isnan(result["metrics"]["BEING_LESS_WRONG"]) and math.isnan(result["metrics"]["LATENT_DIVERSITY"])


def test_blw_cosine_is_exact_to_1e9():
    """One missed user: BLW is the cosine of two float32 vectors, computed exactly (float64)."""
    rng = np.random.default_rng(16)
    a, b = rng.normal(size=(2, 64)).astype(np.float32)
    tv = TrackVectors.from_mapping([5, 6], np.stack([a, b]))
    predictions = np.array([[6] + list(range(100, 100 + K - 1))])
    blw = being_less_wrong(predictions, np.array([5]), np.array([False]), tv)
    want = _cos([float(x) for x in a], [float(x) for x in b])
    assert abs(blw - want) <= TOL, f"BLW {blw!r} vs exact cosine {want!r} (diff {abs(blw - want):.2e})"


def test_vectors_given_as_float32_are_used_as_is():
    world = make_world(seed=13, dim=16, vocab_share=1.0)
    result, want = check_world(world)
    assert result["stand_in"] is True


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_users=st.integers(1, 40),
    hit_share=st.floats(0.0, 1.0),
    pad_share=st.floats(0.0, 1.0),
    vocab_share=st.floats(0.1, 1.0),  # an empty vocabulary has its own test below
    perm_seed=st.integers(0, 1000),
)
def test_properties_and_user_permutation(seed, n_users, hit_share, pad_share, vocab_share, perm_seed):
    world = make_world(seed, n_users=n_users, n_tracks=150, n_artists=15, hit_share=hit_share,
                       pad_share=pad_share, vocab_share=vocab_share)  # fmt: skip
    result = run_code(world)
    m = result["metrics"]
    for name in METRICS[2:7]:
        assert math.isnan(m[name]) or m[name] <= 0, name
    assert 0.0 <= m["HIT_RATE"] <= 1.0
    assert m["MRR"] <= m["HIT_RATE"] + 1e-15
    assert m["MRR"] >= 0.0

    order = np.random.default_rng(perm_seed).permutation(n_users)
    shuffled = dict(world)
    shuffled["test"] = world["test"].iloc[order].reset_index(drop=True)
    shuffled["predictions"] = [world["predictions"][i] for i in order]
    again = run_code(shuffled)["metrics"]
    for name in METRICS:
        assert same(again[name], m[name], 1e-12), (name, again[name], m[name])


# ---------------------------------------------------------------------------------------------
# A real fold of the synthetic `small` data set
# ---------------------------------------------------------------------------------------------


def test_real_fold_matches_oracle(small):
    fold = make_fold(small.events, FoldConfig(), 0)
    rng = np.random.default_rng(0)
    train_tracks = np.unique(fold.train["track_id"].to_numpy())
    predictions = []
    for g in fold.test["track_id"].tolist():
        p = rng.choice(train_tracks, K, replace=False)
        if g not in p and rng.random() < 0.3:
            p[int(rng.integers(0, K))] = g
        predictions.append(p.tolist())
    in_vocab = train_tracks[rng.random(len(train_tracks)) < 0.8]
    vecs = rng.normal(size=(len(in_vocab), 8)).astype(np.float32)
    vectors = {int(t): tuple(float(x) for x in v) for t, v in zip(in_vocab, vecs)}
    world = {
        "train": fold.train, "test": fold.test, "users": small.users, "tracks": small.tracks,
        "predictions": predictions, "vectors": vectors,
    }  # fmt: skip
    result, want = check_world(world, slices=True)
    assert 0.2 < want["HIT_RATE"] < 0.5
    for name in METRICS:
        assert not math.isnan(want[name]), name


# ---------------------------------------------------------------------------------------------
# Rejections
# ---------------------------------------------------------------------------------------------


def _grid(n=3):
    return np.arange(n * K, dtype=np.int64).reshape(n, K)


@pytest.mark.parametrize(
    "bad",
    [
        _grid(4),  # one row too many
        _grid(3)[:, :99],  # k = 99
        _grid(1).ravel(),  # 1-D
        _grid(3).reshape(3, K, 1),  # 3-D
    ],
    ids=["rows", "k", "1d", "3d"],
)
def test_rejects_wrong_shape(bad):
    with pytest.raises(TripletlitError):
        check_predictions(bad, 3)


def test_rejects_duplicates_in_a_row():
    p = _grid()
    p[1, 50] = p[1, 3]
    with pytest.raises(TripletlitError, match="row 1"):
        check_predictions(p, 3)


def test_repeated_padding_is_fine():
    p = _grid()
    p[0, 10:] = -1
    p[2, :] = -1
    assert check_predictions(p, 3).shape == (3, K)


@pytest.mark.parametrize("value", [-2, -100])
def test_rejects_negative_ids_other_than_minus_one(value):
    p = _grid()
    p[2, 7] = value
    with pytest.raises(TripletlitError):
        check_predictions(p, 3)


def test_rejects_float_dtype():
    with pytest.raises(TripletlitError):
        check_predictions(_grid().astype(np.float64), 3)


def test_compute_metrics_rejects_bad_predictions():
    world = make_world(seed=14, n_users=5)
    fold = fold_slices(world["train"], world["test"], world["users"], world["tracks"])
    p = np.asarray(world["predictions"])
    with pytest.raises(TripletlitError):
        compute_metrics(p[:4], fold)
    with pytest.raises(TripletlitError):
        compute_metrics(p.astype(float), fold)
    p = p.copy()
    p[0] = np.arange(K)
    p[0, 1] = 0
    with pytest.raises(TripletlitError):
        compute_metrics(p, fold)


def test_error_messages_are_one_line():
    with pytest.raises(TripletlitError) as info:
        check_predictions(_grid(2), 3)
    assert "\n" not in str(info.value)
