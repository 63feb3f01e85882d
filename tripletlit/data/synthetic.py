"""A synthetic LFM-like data set in the EvalRS format: the embedded default of tripletlit.

The generator plants what the method and the bias-aware metrics look at
(``../shared/spec/data-stats.md``):

- latent taste: artists belong to *styles*; each user mixes a few styles; tracks inherit the
  style of their artist, so co-listening carries signal beyond popularity;
- minorities with a different taste: some styles are *regional* (listened to almost only by
  users of one country) and some global styles lean female, so an accuracy-only model shows
  miss-rate gaps across the country and gender slices;
- varied per-user artist variety (from one artist to hundreds, artist Gini impurity over [0, 1));
- power-law artist and track popularity, heavy-tailed activity and play counts;
- timestamps within each user's active window, clustered per artist, so a leave-last-out split
  and the song2vec stand-in have an order to use.

User demographics (gender, country, age, playcount, registration date) follow the real LFM-1b
user table: the calibration constants below are statistics measured on it (see data-stats.md).

Everything is vectorised; events are produced in fixed-size chunks of users, each with its own
child random stream, so the output depends only on the preset and the seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tripletlit.data import schema
from tripletlit.data.dataset import Dataset
from tripletlit.errors import TripletlitError


@dataclass(frozen=True)
class Preset:
    """Size of a synthetic data set. ``tracks_per_user`` is the mean target number of distinct
    (user, track) rows per user (users whose artists have short catalogues end up with fewer)."""

    name: str
    n_users: int
    n_tracks: int
    n_artists: int
    tracks_per_user: float
    n_styles: int
    max_tracks_per_user: int
    max_artists_per_user: int


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("tiny", 400, 1_500, 80, 60, 6, 200, 40),
        Preset("small", 10_000, 30_000, 2_000, 100, 16, 400, 120),
        Preset("medium", 30_000, 200_000, 15_000, 250, 32, 1_000, 200),
        Preset("evalrs", 119_555, 820_998, 62_605, 330, 48, 700, 250),
    )
}

# ---------------------------------------------------------------------------------------------
# Calibration constants measured on the LFM-1b user table (120,322 users).
# ---------------------------------------------------------------------------------------------
#: share of all users per country (missing: 54.1%); the 20 largest countries.
TOP_COUNTRIES = {
    "US": 0.085, "RU": 0.042, "DE": 0.038, "UK": 0.038, "PL": 0.037, "BR": 0.032, "FI": 0.012,
    "NL": 0.011, "ES": 0.010, "SE": 0.010, "UA": 0.010, "CA": 0.009, "FR": 0.009, "AU": 0.008,
    "IT": 0.008, "JP": 0.007, "NO": 0.006, "MX": 0.006, "CZ": 0.005, "BY": 0.005,
}  # fmt: skip
MISSING_COUNTRY_SHARE = 0.541
#: the remaining 188 countries share 7.1% with a decaying (Zipf-like) profile.
TAIL_COUNTRY_SHARE = 1.0 - MISSING_COUNTRY_SHARE - sum(TOP_COUNTRIES.values())
TAIL_COUNTRIES = (
    "BE ID TR CL HR PT AR CH AT DK HU RS RO BG IE LT SK GR LV NZ CN CO IR IN VE EE IL KZ ZA PE PH "
    "SI AQ MY CR SG MK IS TH EG HK VN KR GE BA TW PR MD UY GT CC EC BD AE VA UZ LU ME SA PY AZ DO "
    "MA CX AM TN NP AF KP PA KG MT BO SV UM CY GS JM LB MV HN RE EH BB ZW MG NU TT VI AD MN ST IO "
    "CU BS PK PG KY FM FJ NA AG AL AO BH BI BJ BN BT BW BZ CD CF CG CI CM CV DJ DM DZ ER ET GA GD "
    "GH GM GN GQ GW GY HT IQ JO KE KH KI KM KN KW LA LC LI LK LR LS LY MC MH ML MM MO MR MU MW MZ "
    "NE NG NI NR OM PS PW QA RW SB SC SD SL SM SN SO SR SS SY SZ TD TG TJ TL TM TO TT TV TZ UG VC "
    "VU WS YE ZM"
).split()
#: gender shares (m, f, n, missing) where the country is known / missing.
GENDER_GIVEN_COUNTRY = {True: (0.6615, 0.2525, 0.0845, 0.0015), False: (0.0532, 0.0286, 0.9162, 0.0020)}
#: share of users with a known age (age > 0), where the country is known / missing.
AGE_KNOWN_GIVEN_COUNTRY = {True: 0.7795, False: 0.047}
#: quantiles of the known ages.
AGE_QUANTILES = ((0.0, 14), (0.01, 15), (0.05, 17), (0.10, 18), (0.25, 20), (0.50, 23), (0.75, 28),
                 (0.90, 35), (0.95, 42), (0.99, 60), (1.0, 80))  # fmt: skip
#: quantiles of the all-time playcount (heavy-tailed; interpolated in log space).
PLAYCOUNT_QUANTILES = ((0.0, 1), (0.01, 45), (0.05, 137), (0.10, 251), (0.25, 671), (0.40, 1223),
                       (0.50, 1690), (0.60, 3944), (0.75, 17853), (0.90, 49678), (0.95, 76024),
                       (0.99, 152778), (0.999, 335008), (1.0, 1_000_150))  # fmt: skip
PLAYCOUNT_UNKNOWN_SHARE = 0.00024
#: quantiles of the registration time (Unix seconds).
REGISTERED_QUANTILES = ((0.0, 1035849600), (0.01, 1111848222), (0.05, 1152051364),
                        (0.10, 1178567330), (0.25, 1233879498), (0.50, 1295975961),
                        (0.75, 1329481458), (0.90, 1335290277), (0.95, 1336485992),
                        (0.99, 1337829728), (1.0, 1343250546))  # fmt: skip
LOG_FIRST_EVENT, LOG_LAST_EVENT = 1104537600, 1404172800  # 2005-01-01 .. 2014-07-01

# ---------------------------------------------------------------------------------------------
# Taste model (planted structure).
# ---------------------------------------------------------------------------------------------
#: countries with regional styles, in the order regional styles are handed out.
REGIONAL_COUNTRIES = ("RU", "BR", "PL", "FI", "DE", "UA", "SE", "ES")
REGIONAL_STYLE_SHARE = 0.4  # fraction of styles that are regional
HOME_BOOST, AWAY_DAMPING = 40.0, 0.05  # prior weight of a regional style for home / other users
FEMALE_STYLE_SHARE, FEMALE_BOOST, MALE_DAMPING = 0.25, 4.0, 0.6
ARTIST_CONCENTRATION = 3.0  # rank = floor(n * r ** c): larger c -> steeper artist popularity
USER_CHUNK = 8_192


def _interp_quantiles(u: np.ndarray, table, log: bool = False) -> np.ndarray:
    q, v = (np.asarray(c, dtype=np.float64) for c in zip(*table))
    return np.exp(np.interp(u, q, np.log(v))) if log else np.interp(u, q, v)


def _country_table() -> tuple[np.ndarray, np.ndarray]:
    """Country codes (None = missing) and their probabilities."""
    ranks = np.arange(len(TAIL_COUNTRIES), dtype=np.float64)
    tail = (ranks + 8.0) ** -1.6
    tail *= TAIL_COUNTRY_SHARE / tail.sum()
    codes = np.array([None, *TOP_COUNTRIES, *TAIL_COUNTRIES], dtype=object)
    probs = np.concatenate([[MISSING_COUNTRY_SHARE], list(TOP_COUNTRIES.values()), tail])
    return codes, probs / probs.sum()


def _sparse_ids(rng: np.random.Generator, n: int, upper: int) -> np.ndarray:
    """n distinct increasing ids spread over [0, upper) like LFM-1b's, via random gaps."""
    gaps = rng.integers(1, max(2, 2 * upper // max(n, 1)), size=n)
    return np.cumsum(gaps) - gaps[0]


def _users(preset: Preset, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = preset.n_users
    codes, probs = _country_table()
    country = codes[rng.choice(len(codes), size=n, p=probs)]
    known = np.array([c is not None for c in country])
    gender = np.empty(n, dtype=object)
    for is_known, shares in GENDER_GIVEN_COUNTRY.items():
        rows = np.flatnonzero(known == is_known)
        gender[rows] = np.array(["m", "f", "n", None], dtype=object)[rng.choice(4, size=len(rows), p=shares)]
    age_known = rng.random(n) < np.where(known, AGE_KNOWN_GIVEN_COUNTRY[True], AGE_KNOWN_GIVEN_COUNTRY[False])
    age = np.where(age_known, np.round(_interp_quantiles(rng.random(n), AGE_QUANTILES)), -1).astype(np.int32)
    playcount = np.round(_interp_quantiles(rng.random(n), PLAYCOUNT_QUANTILES, log=True)).astype(np.int64)
    playcount[rng.random(n) < PLAYCOUNT_UNKNOWN_SHARE] = -1
    registered = np.round(_interp_quantiles(rng.random(n), REGISTERED_QUANTILES)).astype(np.int64)
    # Missing-country users still come from somewhere: their taste follows a latent country
    # drawn from the known-country distribution (so the "NaN" slice is a mixture).
    known_codes, known_probs = codes[1:], probs[1:] / probs[1:].sum()
    latent = country.copy()
    latent[~known] = known_codes[rng.choice(len(known_codes), size=int((~known).sum()), p=known_probs)]
    return {"country": country, "gender": gender, "age": age, "playcount": playcount,
            "registered_unixtime": registered, "latent_country": latent}  # fmt: skip


def _catalogue(preset: Preset, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Styles, artists (style, popularity order) and tracks (contiguous per artist, hit first)."""
    n_styles, n_artists, n_tracks = preset.n_styles, preset.n_artists, preset.n_tracks
    style_share = (np.arange(n_styles) + 1.0) ** -0.8
    style_share /= style_share.sum()
    n_regional = max(1, round(REGIONAL_STYLE_SHARE * n_styles)) if n_styles > 1 else 0
    style_home = np.full(n_styles, -1)
    regional = rng.permutation(n_styles)[:n_regional]
    style_home[regional] = np.arange(n_regional) % len(REGIONAL_COUNTRIES)
    global_styles = np.flatnonzero(style_home < 0)
    female_styles = rng.permutation(global_styles)[: max(1, round(FEMALE_STYLE_SHARE * len(global_styles)))]
    style_female = np.zeros(n_styles, dtype=bool)
    style_female[female_styles] = True

    # every style gets at least one artist; the rest follow the style shares
    artist_style = np.concatenate(
        [np.arange(n_styles), rng.choice(n_styles, size=n_artists - n_styles, p=style_share)]
    )
    rng.shuffle(artist_style)
    # artists of a style ordered by popularity: style_order[style_start[s] + rank]
    appeal = rng.lognormal(0.0, 1.0, size=n_artists)
    style_order = np.lexsort((-appeal, artist_style))
    style_count = np.bincount(artist_style, minlength=n_styles)
    style_start = np.concatenate([[0], np.cumsum(style_count)[:-1]])
    rank_in_style = np.empty(n_artists, dtype=np.int64)
    rank_in_style[style_order] = np.arange(n_artists) - np.repeat(style_start, style_count)

    # tracks per artist: popular artists have longer catalogues (heavy-tailed)
    weight = (rank_in_style + 1.0) ** -0.5 * rng.lognormal(0.0, 0.8, size=n_artists)
    artist_tracks = 1 + rng.multinomial(n_tracks - n_artists, weight / weight.sum())
    artist_track_start = np.concatenate([[0], np.cumsum(artist_tracks)[:-1]])
    return {
        "style_share": style_share, "style_home": style_home, "style_female": style_female,
        "artist_style": artist_style, "style_order": style_order, "style_count": style_count,
        "style_start": style_start, "artist_tracks": artist_tracks,
        "artist_track_start": artist_track_start,
    }  # fmt: skip


def _tastes(preset: Preset, users: dict, cat: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per user: style mixture, number of artists, concentration of plays, target rows."""
    n, n_styles = preset.n_users, preset.n_styles
    home = np.full(n, -1)
    for i, code in enumerate(REGIONAL_COUNTRIES):
        home[users["latent_country"] == code] = i
    style_home = cat["style_home"]
    boost = np.where(
        style_home[None, :] < 0,
        1.0,
        np.where(style_home[None, :] == home[:, None], HOME_BOOST, AWAY_DAMPING),
    )
    female = users["gender"] == "f"
    male = users["gender"] == "m"
    boost = boost * np.where(cat["style_female"][None, :] & female[:, None], FEMALE_BOOST, 1.0)
    boost = boost * np.where(cat["style_female"][None, :] & male[:, None], MALE_DAMPING, 1.0)
    prior = np.log(cat["style_share"][None, :] * boost)
    # k styles without replacement per user (Gumbel top-k), mixed with Dirichlet(1) weights
    k = np.minimum(1 + rng.poisson(1.2, size=n), n_styles)
    ranked = np.argsort(-(prior + rng.gumbel(size=prior.shape)), axis=1)
    chosen = np.arange(n_styles)[None, :] < k[:, None]
    mix = np.zeros((n, n_styles))
    np.put_along_axis(mix, ranked, np.where(chosen, rng.exponential(size=(n, n_styles)), 0.0), axis=1)
    mix /= mix.sum(axis=1, keepdims=True)

    # target distinct tracks: log-normal around the preset mean, tied to the playcount
    z = (np.log(np.maximum(users["playcount"], 1)) - 7.95) / 2.03
    sigma2 = 0.35**2 + 0.55**2
    log_rows = np.log(preset.tracks_per_user) - sigma2 / 2 + 0.35 * z + 0.55 * rng.standard_normal(n)
    rows = np.clip(np.round(np.exp(log_rows)), 12, preset.max_tracks_per_user).astype(np.int64)
    # variety: number of artists log-uniform in [1, max], fewer for users with few rows
    # (at least one artist per 40 rows, so that a user's artists can supply its rows)
    cap = np.minimum(preset.max_artists_per_user, np.maximum(1, rows // 2))
    floor = np.minimum(cap, np.ceil(rows / 40))
    n_artists = np.floor(np.exp(np.log(floor) + rng.random(n) * np.log((cap + 1) / floor))).astype(np.int64)
    return {
        "mix": mix,
        "rows": rows,
        "n_artists": n_artists,
        "artist_alpha": rng.choice([0.3, 1.0, 3.0], size=n),  # evenness of plays over artists
        "track_concentration": rng.lognormal(np.log(2.0), 0.3, size=n),
        "count_scale": np.clip(0.5 * np.log(np.maximum(users["playcount"], 1) / rows), 0.0, 3.0),
        "spread": rng.uniform(0.02, 0.15, size=n),  # time spread of one artist's plays
    }


def _events_chunk(
    users_idx: np.ndarray, users: dict, cat: dict, taste: dict, preset: Preset, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Rows of the users ``users_idx`` (global indices), aggregated to one per (user, track)."""
    n = len(users_idx)
    # artist slots: each user picks n_artists artists via its style mixture and popularity
    n_slots = taste["n_artists"][users_idx]
    slot_user = np.repeat(np.arange(n), n_slots)
    cum_mix = np.cumsum(taste["mix"][users_idx], axis=1)
    r = rng.random(len(slot_user))
    style = np.minimum((cum_mix[slot_user] < r[:, None]).sum(axis=1), preset.n_styles - 1)
    pos = np.floor(cat["style_count"][style] * rng.random(len(slot_user)) ** ARTIST_CONCENTRATION)
    slot_artist = cat["style_order"][cat["style_start"][style] + pos.astype(np.int64)]
    # one slot per distinct (user, artist); the user's plays spread over them as Dirichlet(alpha)
    slot_key = np.unique(slot_user.astype(np.int64) * preset.n_artists + slot_artist)
    slot_user, slot_artist = np.divmod(slot_key, preset.n_artists)
    slot_weight = rng.gamma(taste["artist_alpha"][users_idx][slot_user])
    slot_offsets = np.concatenate([[0], np.cumsum(np.bincount(slot_user, minlength=n))])
    starts = slot_offsets[:-1]
    slot_weight /= np.add.reduceat(slot_weight, starts)[slot_user]
    # rows allotted to each slot: share of the user's target, capped by the artist's catalogue,
    # the excess moved to the user's other artists (users of small catalogues end up lighter)
    capacity = cat["artist_tracks"][slot_artist].astype(np.float64)
    quota = slot_weight * taste["rows"][users_idx][slot_user]
    for _ in range(4):
        excess = np.add.reduceat(np.maximum(quota - capacity, 0.0), starts)
        quota = np.minimum(quota, capacity)
        room = capacity - quota
        room_total = np.add.reduceat(room, starts)
        share = np.divide(room, room_total[slot_user], out=np.zeros_like(room), where=room_total[slot_user] > 0)
        quota += excess[slot_user] * share
    quota = np.minimum(np.floor(quota + rng.random(len(quota))), capacity).astype(np.int64)

    # candidate tracks per slot: the artist's top ~1.5 x quota tracks; pick `quota` of them
    # without replacement, favouring hits (Efraimidis-Spirakis keys log(r) / weight)
    pool = np.where(quota > 0, np.minimum(capacity, np.ceil(1.5 * quota) + 2), 0).astype(np.int64)
    pair_slot = np.repeat(np.arange(len(quota)), pool)
    pair_offsets = np.concatenate([[0], np.cumsum(pool)])
    rank = np.arange(len(pair_slot)) - pair_offsets[pair_slot]
    concentration = taste["track_concentration"][users_idx][slot_user][pair_slot]
    keys = np.log(rng.random(len(pair_slot))) * (rank + 1.0) ** concentration
    order = np.lexsort((-keys, pair_slot))
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order)) - pair_offsets[pair_slot[order]]
    keep = position < quota[pair_slot]
    slot = pair_slot[keep]
    track = cat["artist_track_start"][slot_artist[slot]] + rank[keep]
    user_local = slot_user[slot]

    t0 = np.maximum(users["registered_unixtime"][users_idx], LOG_FIRST_EVENT).astype(np.float64)
    span = np.maximum(LOG_LAST_EVENT - t0, 86_400.0)
    slot_centre = t0[slot_user] + rng.random(len(slot_user)) * span[slot_user]
    when = slot_centre[slot] + rng.standard_normal(len(slot)) * (span * taste["spread"][users_idx])[user_local]
    latest = np.clip(when, t0[user_local], LOG_LAST_EVENT)
    # play counts: heavier for active users, for favourite artists and for the artist's hits
    favour = np.log(slot_weight[slot] * (slot_offsets[user_local + 1] - slot_offsets[user_local]))
    scale = taste["count_scale"][users_idx][user_local] + 0.3 * favour - 0.2 * np.log1p(rank[keep])
    count = np.ceil(np.exp(scale + 0.9 * rng.standard_normal(len(slot)) - 0.4)).astype(np.int64)
    # within a user, rows in time order like a listening history
    order = np.lexsort((latest, user_local))
    return {
        "user": users_idx[user_local[order]],
        "track": track[order],
        "timestamp": latest[order].astype(np.int64),
        "count": np.maximum(count[order], 1),
    }


def _names(prefix: str, ids: np.ndarray) -> np.ndarray:
    return pc.binary_join_element_wise(prefix, pa.array(ids).cast(pa.string()), "").to_numpy(zero_copy_only=False)


def _tracks_table(preset, cat, track_ids, artist_ids, rng) -> tuple[pd.DataFrame, np.ndarray]:
    """The tracks table and the primary album of every track (for the events' album_id)."""
    n_tracks = preset.n_tracks
    track_artist = np.repeat(np.arange(preset.n_artists), cat["artist_tracks"])
    # ~1.6 albums per track on average across the catalogue: singles, compilations, reissues
    artist_albums = np.maximum(1, np.round(1.6 * cat["artist_tracks"])).astype(np.int64)
    album_start = np.concatenate([[0], np.cumsum(artist_albums)[:-1]])
    album_ids = rng.permutation(int(artist_albums.sum()))
    per_track = 1 + np.minimum(rng.poisson(0.6, size=n_tracks), 3)
    owner = np.repeat(np.arange(n_tracks), per_track)
    local = np.floor(rng.random(len(owner)) * artist_albums[track_artist][owner]).astype(np.int64)
    album = album_ids[album_start[track_artist][owner] + local]
    pairs = np.unique(owner.astype(np.int64) * (album_ids.size + 1) + album)
    owner, album = np.divmod(pairs, album_ids.size + 1)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=n_tracks))]).astype(np.int32)
    primary = album[offsets[:-1]]
    album_text = pa.array(album).cast(pa.string())
    ids_text = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), album_text), ", ")
    names = pc.binary_join_element_wise("'Album ", album_text, "'", "")
    names_text = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), names), ", ")
    tracks = pd.DataFrame(
        {
            "track_id": track_ids.astype(np.int32),
            "track": _names("Track ", track_ids),
            "artist_id": artist_ids[track_artist].astype(np.int32),
            "artist": _names("Artist ", artist_ids[track_artist]),
            "albums_id": pc.binary_join_element_wise("[", ids_text, "]", "").to_numpy(zero_copy_only=False),
            "albums": pc.binary_join_element_wise("[", names_text, "]", "").to_numpy(zero_copy_only=False),
        }
    )
    return tracks, primary


def _user_extras(events: pd.DataFrame, users: pd.DataFrame, rng: np.random.Generator) -> dict:
    """The 43 LFM-1b extra user columns, consistent with the generated events where they can be."""
    n = len(users)
    idx = users["user_id"].to_numpy()
    by_user = events.groupby("user_id", sort=True)
    counts = by_user["user_track_count"].sum().reindex(idx, fill_value=0).to_numpy()
    distinct = by_user.size().reindex(idx, fill_value=0).to_numpy()
    artists = by_user["artist_id"].nunique().reindex(idx, fill_value=0).to_numpy()
    weeks = np.maximum((LOG_LAST_EVENT - users["registered_unixtime"].to_numpy()) / 604_800, 1.0)
    novelty = rng.beta(2, 5, size=n)
    mainstream = rng.beta(2, 12, size=n)
    extras = {}
    for i, period in enumerate(("month", "6months", "year")):
        extras[f"novelty_artist_avg_{period}"] = np.clip(novelty * (1 - 0.25 * i) + rng.normal(0, 0.02, n), 0, 1)
    for period in ("month", "6months", "year"):
        extras[f"mainstreaminess_avg_{period}"] = np.clip(mainstream + rng.normal(0, 0.02, n), 0, 1)
    extras["mainstreaminess_global"] = mainstream
    extras["cnt_listeningevents"] = counts.astype(np.float64)
    extras["cnt_distinct_tracks"] = distinct.astype(np.float64)
    extras["cnt_distinct_artists"] = artists.astype(np.float64)
    extras["cnt_listeningevents_per_week"] = counts / weeks
    weekday = rng.dirichlet(np.full(7, 30.0), size=n)
    hour = rng.dirichlet(np.full(24, 8.0), size=n)
    extras |= {f"relative_le_per_weekday{d + 1}": weekday[:, d] for d in range(7)}
    extras |= {f"relative_le_per_hour{h}": hour[:, h] for h in range(24)}
    return {c: extras[c] for c in schema.USER_EXTRA_COLUMNS}


def resolve_preset(preset: str | Preset) -> Preset:
    """A preset by name (tiny, small, medium, evalrs) or a custom :class:`Preset`."""
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise TripletlitError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset]


def generate(
    preset: str | Preset = "small", seed: int = 0, progress: Callable[[int, int], None] | None = None
) -> tuple[Dataset, np.ndarray]:
    """Generate a synthetic data set; returns it and the LFM-like event ids of its rows.

    Deterministic per (preset, seed). ``progress(done_users, total_users)`` is called after
    each chunk of users.
    """
    preset = resolve_preset(preset)
    users_seq, catalogue_seq, taste_seq, ids_seq, events_seq = np.random.SeedSequence(seed).spawn(5)
    users = _users(preset, np.random.default_rng(users_seq))
    cat = _catalogue(preset, np.random.default_rng(catalogue_seq))
    taste = _tastes(preset, users, cat, np.random.default_rng(taste_seq))
    ids_rng = np.random.default_rng(ids_seq)
    user_ids = _sparse_ids(ids_rng, preset.n_users, 50_000_000)
    track_ids = ids_rng.permutation(_sparse_ids(ids_rng, preset.n_tracks, 32_000_000))
    artist_ids = ids_rng.permutation(_sparse_ids(ids_rng, preset.n_artists, 3_000_000))
    tracks, primary_album = _tracks_table(preset, cat, track_ids, artist_ids, ids_rng)
    # same in-memory form as a loaded data set: one int64 array of album ids per track
    tracks["albums_id"] = schema.parse_album_ids(tracks["albums_id"]).to_numpy()
    track_artist = np.repeat(np.arange(preset.n_artists), cat["artist_tracks"])

    chunks = []
    starts = range(0, preset.n_users, USER_CHUNK)
    chunk_seqs = events_seq.spawn(len(starts))
    for start, seq in zip(starts, chunk_seqs):
        idx = np.arange(start, min(start + USER_CHUNK, preset.n_users))
        part = _events_chunk(idx, users, cat, taste, preset, np.random.default_rng(seq))
        chunks.append(
            pd.DataFrame(
                {
                    "user_id": user_ids[part["user"]].astype(np.int32),
                    "artist_id": artist_ids[track_artist[part["track"]]].astype(np.int32),
                    "album_id": primary_album[part["track"]].astype(np.int32),
                    "track_id": track_ids[part["track"]].astype(np.int32),
                    "timestamp": part["timestamp"].astype(np.int32),
                    "user_track_count": np.minimum(part["count"], np.iinfo(np.int32).max).astype(np.int32),
                }
            )
        )
        del part
        if progress is not None:
            progress(int(idx[-1]) + 1, preset.n_users)
    events = pd.concat(chunks, ignore_index=True)
    del chunks
    gaps = ids_rng.integers(1, 40, size=len(events))
    event_ids = np.cumsum(gaps, dtype=np.int64)

    users_table = pd.DataFrame(
        {
            "user_id": user_ids.astype(np.int32),
            "country": users["country"],
            "age": users["age"],
            "gender": users["gender"],
            "playcount": users["playcount"],
            "registered_unixtime": users["registered_unixtime"],
        }
    )
    users_table = pd.concat(
        [users_table, pd.DataFrame(_user_extras(events, users_table, ids_rng))], axis=1
    )
    meta = {"generator": "tripletlit.data.synthetic", "preset": asdict(preset), "seed": seed}
    dataset = Dataset(events, tracks, users_table, name=f"synthetic-{preset.name}", meta=meta)
    return dataset, event_ids
