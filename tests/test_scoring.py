"""The EvalRS 2022 phase-2 SCORE: the leaderboard known answer, gate, normalisation, profiles."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import yaml
from conftest import shared_file

from tripletlit.errors import TripletlitError
from tripletlit.evaluation.metrics import METRICS
from tripletlit.evaluation.scoring import EVALRS2022, Profile, load_profile, score

# spec section 5, copied from the table: metric -> (base, best)
SPEC = {
    "HIT_RATE": (0.018763, 0.264642),
    "MRR": (0.001654, 0.067493),
    "MRED_COUNTRY": (-0.006944, -0.004490),
    "MRED_USER_ACTIVITY": (-0.012460, -0.006922),
    "MRED_TRACK_POPULARITY": (-0.006816, -0.005865),
    "MRED_ARTIST_POPULARITY": (-0.003915, -0.003623),
    "MRED_GENDER": (-0.004354, -0.000032),
    "BEING_LESS_WRONG": (0.2744871, 0.40635),
    "LATENT_DIVERSITY": (-0.324706, -0.202812),
}
BASE = {m: v[0] for m, v in SPEC.items()}
BEST = {m: v[1] for m, v in SPEC.items()}
KNOWN_TOP = [1.702570, 1.552977, 1.330388, 1.184669, 1.138580, 1.028222]
# the paper's row (Table 2) rounded to 6 decimals: a realistic point just above the gate
PAPER_ROW = {
    "HIT_RATE": 0.015565, "MRR": 0.001677, "MRED_COUNTRY": -0.004036, "MRED_USER_ACTIVITY": -0.003504,
    "MRED_TRACK_POPULARITY": -0.004444, "MRED_ARTIST_POPULARITY": -0.000867, "MRED_GENDER": -0.000797,
    "BEING_LESS_WRONG": 0.281863, "LATENT_DIVERSITY": -0.272944,
}  # fmt: skip


def spec_score(metrics: dict) -> float:
    """Section 5 step by step, with the spec's constants (no gate)."""
    n = {m: (metrics[m] - BASE[m]) / (BEST[m] - BASE[m]) for m in SPEC}
    perf = (n["HIT_RATE"] + n["MRR"]) / 2
    fair = sum(n[m] for m in SPEC if m.startswith("MRED_")) / 5
    behav = (n["BEING_LESS_WRONG"] + n["LATENT_DIVERSITY"]) / 2
    return (1 * perf + 1.5 * fair + 1.5 * behav) / 4


def test_builtin_profile_carries_the_spec_constants():
    assert EVALRS2022.name == "evalrs2022"
    assert EVALRS2022.base == BASE and EVALRS2022.best == BEST
    assert EVALRS2022.weights == {"perf": 1.0, "fair": 1.5, "behav": 1.5}
    assert (EVALRS2022.gate_metric, EVALRS2022.gate_min, EVALRS2022.gate_score) == ("HIT_RATE", 0.015, -100.0)
    assert load_profile("evalrs2022") is EVALRS2022
    assert load_profile() is EVALRS2022


# ---------------------------------------------------------------------------------------------
# Known answer: the 2022 leaderboard
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def submissions():
    df = pd.read_parquet(shared_file("evalrs2022", "evalrs_2022_submissions.parquet"))
    df = df[df["submitted_at"] >= pd.Timestamp("2022-09-01")]
    assert len(df) > 0
    return df


def _row_metrics(row) -> dict:
    return {m: float(row[m.lower()]) for m in METRICS}


def test_leaderboard_top_six(submissions):
    scores = [score(_row_metrics(row))["score"] for _, row in submissions.iterrows()]
    best = pd.Series(scores, index=submissions.index).groupby(submissions["participant_id"]).max()
    top = sorted(best.tolist(), reverse=True)[:6]
    assert [round(s, 6) for s in top] == KNOWN_TOP


def test_leaderboard_matches_the_spec_formula(submissions):
    for _, row in submissions.iterrows():
        metrics = _row_metrics(row)
        got = score(metrics)
        want = -100.0 if metrics["HIT_RATE"] < 0.015 else spec_score(metrics)
        assert got["score"] == pytest.approx(want, abs=1e-12)
        assert got["ungated_score"] == pytest.approx(spec_score(metrics), abs=1e-12)


def test_paper_row(submissions):
    rows = submissions[
        ((submissions["hit_rate"] - 0.015565).abs() < 5e-7) & ((submissions["mrr"] - 0.001677).abs() < 5e-7)
    ]
    assert len(rows) == 1
    metrics = _row_metrics(rows.iloc[0])
    assert metrics == pytest.approx(PAPER_ROW, abs=1e-6)
    result = score(metrics)
    assert round(result["score"], 6) == 1.330388
    assert result["gated"] is False
    assert result["profile"] == "evalrs2022"


# ---------------------------------------------------------------------------------------------
# Gate
# ---------------------------------------------------------------------------------------------


def _at(values: dict, **changes) -> dict:
    out = dict(values)
    out.update(changes)
    return out


def test_gate_just_below_and_just_above():
    below = score(_at(PAPER_ROW, HIT_RATE=0.0149999))
    assert below["score"] == -100.0 and below["gated"] is True
    assert below["ungated_score"] == pytest.approx(spec_score(_at(PAPER_ROW, HIT_RATE=0.0149999)), abs=1e-12)
    above = score(_at(PAPER_ROW, HIT_RATE=0.0150001))
    assert above["gated"] is False
    assert above["score"] == pytest.approx(spec_score(_at(PAPER_ROW, HIT_RATE=0.0150001)), abs=1e-12)
    assert score(_at(PAPER_ROW, HIT_RATE=0.015))["gated"] is False  # "< 0.015" gates, 0.015 passes


def test_custom_gate():
    profile = EVALRS2022.with_gate(0.02)
    assert profile.gate_min == 0.02 and profile.gate_metric == "HIT_RATE"
    assert EVALRS2022.gate_min == 0.015  # the built-in profile is untouched
    gated = score(_at(PAPER_ROW, HIT_RATE=0.0199), profile)
    assert gated["gated"] is True and gated["score"] == -100.0
    passed = score(_at(PAPER_ROW, HIT_RATE=0.0201), profile)
    assert passed["gated"] is False and passed["score"] == pytest.approx(spec_score(_at(PAPER_ROW, HIT_RATE=0.0201)))


def test_gate_disabled():
    profile = EVALRS2022.with_gate(None)
    assert profile.gate_metric is None
    metrics = _at(PAPER_ROW, HIT_RATE=0.0001)
    result = score(metrics, profile)
    assert result["gated"] is False
    assert result["score"] == pytest.approx(spec_score(metrics), abs=1e-12)
    assert result["score"] == result["ungated_score"]
    # and back on again
    again = profile.with_gate(0.015)
    assert score(metrics, again)["gated"] is True


# ---------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------


def test_metrics_at_base_score_zero():
    result = score(BASE, EVALRS2022.with_gate(None))
    assert all(result["normalised"][m] == 0 for m in METRICS)
    assert result["perf"] == result["fair"] == result["behav"] == 0
    assert result["score"] == 0


def test_metrics_at_best_score_one():
    result = score(BEST)
    assert result["gated"] is False
    assert all(result["normalised"][m] == pytest.approx(1.0, abs=1e-12) for m in METRICS)
    assert result["score"] == pytest.approx(1.0, abs=1e-12)


def test_each_group_weight():
    no_gate = EVALRS2022.with_gate(None)
    only_perf = _at(BASE, HIT_RATE=BEST["HIT_RATE"], MRR=BEST["MRR"])
    assert score(only_perf, no_gate)["score"] == pytest.approx(1.0 / 4)
    only_fair = _at(BASE, **{m: BEST[m] for m in METRICS if m.startswith("MRED_")})
    assert score(only_fair, no_gate)["score"] == pytest.approx(1.5 / 4)
    only_behav = _at(BASE, BEING_LESS_WRONG=BEST["BEING_LESS_WRONG"], LATENT_DIVERSITY=BEST["LATENT_DIVERSITY"])
    assert score(only_behav, no_gate)["score"] == pytest.approx(1.5 / 4)
    one_mred = _at(BASE, MRED_GENDER=BEST["MRED_GENDER"])
    assert score(one_mred, no_gate)["score"] == pytest.approx(1.5 / 4 / 5)


@pytest.mark.parametrize("name", [m for m in METRICS if m.startswith("MRED_")])
def test_mred_closer_to_zero_scores_higher(name):
    worse = _at(PAPER_ROW, **{name: BASE[name] - 0.001})
    better = _at(PAPER_ROW, **{name: BASE[name] + 0.0001})  # closer to 0
    assert abs(better[name]) < abs(worse[name])
    assert score(better)["score"] > score(worse)["score"]
    assert score(better)["normalised"][name] > 0 > score(worse)["normalised"][name]


def test_phase1_is_the_plain_mean():
    result = score(PAPER_ROW)
    assert result["phase1"] == pytest.approx(sum(PAPER_ROW.values()) / 9, abs=1e-15)
    gated = score(_at(PAPER_ROW, HIT_RATE=0.0))
    assert gated["phase1"] == pytest.approx((sum(PAPER_ROW.values()) - 0.015565) / 9, abs=1e-15)


def test_nan_metric_makes_the_score_nan():
    result = score(_at(PAPER_ROW, BEING_LESS_WRONG=float("nan")))
    assert math.isnan(result["behav"]) and math.isnan(result["score"])
    assert not math.isnan(result["perf"]) and not math.isnan(result["fair"])


def test_missing_metric_is_rejected():
    metrics = dict(PAPER_ROW)
    del metrics["MRR"]
    with pytest.raises(TripletlitError, match="MRR"):
        score(metrics)


# ---------------------------------------------------------------------------------------------
# YAML profiles
# ---------------------------------------------------------------------------------------------


def _profile_dict(**changes) -> dict:
    raw = {
        "name": "my-profile",
        "gate": {"metric": "HIT_RATE", "min": 0.001, "score": -5.0},
        "weights": {"perf": 2.0, "fair": 1.0, "behav": 1.0},
        "metrics": {m: {"base": BASE[m] / 2, "best": BEST[m] * 2} for m in METRICS},
    }
    raw.update(changes)
    return raw


def _write(tmp_path, raw, name="profile.yaml"):
    path = tmp_path / name
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw))
    return path


def test_yaml_profile_round_trip(tmp_path):
    path = _write(tmp_path, _profile_dict())
    profile = load_profile(path)
    assert isinstance(profile, Profile)
    assert profile.name == "my-profile"
    assert profile.base == {m: BASE[m] / 2 for m in METRICS}
    assert profile.best == {m: BEST[m] * 2 for m in METRICS}
    assert profile.weights == {"perf": 2.0, "fair": 1.0, "behav": 1.0}
    assert (profile.gate_metric, profile.gate_min, profile.gate_score) == ("HIT_RATE", 0.001, -5.0)
    assert load_profile(str(path)) == profile
    assert load_profile(profile) is profile

    # the profile's own weights divide by their sum, its gate score replaces -100
    metrics = dict(PAPER_ROW)
    n = {m: (metrics[m] - profile.base[m]) / (profile.best[m] - profile.base[m]) for m in METRICS}
    perf = (n["HIT_RATE"] + n["MRR"]) / 2
    fair = sum(n[m] for m in METRICS if m.startswith("MRED_")) / 5
    behav = (n["BEING_LESS_WRONG"] + n["LATENT_DIVERSITY"]) / 2
    result = score(metrics, path)
    assert result["score"] == pytest.approx((2 * perf + fair + behav) / 4, abs=1e-12)
    assert result["profile"] == "my-profile"
    assert score(_at(metrics, HIT_RATE=0.0005), path)["score"] == -5.0

    # as_dict writes back a YAML that loads to the same profile
    again = _write(tmp_path, profile.as_dict(), "again.yaml")
    assert load_profile(again) == profile


def test_yaml_profile_defaults(tmp_path):
    raw = {"metrics": {m: {"base": BASE[m], "best": BEST[m]} for m in METRICS}}
    profile = load_profile(_write(tmp_path, raw, "plain.yaml"))
    assert profile.name == "plain"
    assert profile.weights == EVALRS2022.weights
    assert (profile.gate_metric, profile.gate_min, profile.gate_score) == ("HIT_RATE", 0.015, -100.0)
    assert score(PAPER_ROW, profile) == score(PAPER_ROW, EVALRS2022) | {"profile": "plain"}


def test_yaml_profile_without_gate(tmp_path):
    profile = load_profile(_write(tmp_path, _profile_dict(gate=None)))
    assert profile.gate_metric is None
    assert score(_at(PAPER_ROW, HIT_RATE=0.0), profile)["gated"] is False


def _one_line_error(path) -> str:
    with pytest.raises(TripletlitError) as info:
        load_profile(path)
    message = str(info.value)
    assert message and "\n" not in message
    return message


def test_bad_yaml(tmp_path):
    _one_line_error(_write(tmp_path, "metrics: {HIT_RATE: [1, 2\n  : : :\n"))


def test_yaml_that_is_not_a_mapping(tmp_path):
    _one_line_error(_write(tmp_path, "- just\n- a list\n"))


def test_unknown_top_level_key(tmp_path):
    message = _one_line_error(_write(tmp_path, _profile_dict(colour="blue")))
    assert "colour" in message


def test_unknown_metric(tmp_path):
    raw = _profile_dict()
    raw["metrics"]["NDCG"] = {"base": 0.1, "best": 0.2}
    assert "NDCG" in _one_line_error(_write(tmp_path, raw))


def test_missing_metric(tmp_path):
    raw = _profile_dict()
    del raw["metrics"]["LATENT_DIVERSITY"]
    assert "LATENT_DIVERSITY" in _one_line_error(_write(tmp_path, raw))


def test_missing_base_or_non_numeric(tmp_path):
    raw = _profile_dict()
    del raw["metrics"]["MRR"]["base"]
    _one_line_error(_write(tmp_path, raw))
    raw = _profile_dict()
    raw["metrics"]["MRR"]["best"] = "high"
    _one_line_error(_write(tmp_path, raw, "b.yaml"))


def test_best_equal_to_base(tmp_path):
    raw = _profile_dict()
    raw["metrics"]["MRED_GENDER"] = {"base": -0.001, "best": -0.001}
    assert "MRED_GENDER" in _one_line_error(_write(tmp_path, raw))


def test_bad_weights_and_gate_metric(tmp_path):
    _one_line_error(_write(tmp_path, _profile_dict(weights={"perf": 1.0, "fair": 1.0})))
    _one_line_error(_write(tmp_path, _profile_dict(gate={"metric": "NDCG", "min": 0.1}), "g.yaml"))


@pytest.mark.parametrize(
    "change",
    [
        {"gate": {"metric": "HIT_RATE", "minimum": 0.02}},  # a typo must not silently keep 0.015
        {"gate": 0.02},
        {"gate": {"metric": "HIT_RATE", "min": "abc"}},
        {"weights": [1.0, 1.5, 1.5]},
        {"weights": {"perf": "x", "fair": 1.5, "behav": 1.5}},
    ],
    ids=["gate-unknown-key", "gate-scalar", "gate-min-text", "weights-list", "weights-text"],
)
def test_malformed_gate_or_weights(tmp_path, change):
    """Input errors are TripletlitError (errors.py), never AttributeError/ValueError."""
    _one_line_error(_write(tmp_path, _profile_dict(**change)))


def test_unknown_profile_name(tmp_path):
    message = _one_line_error(tmp_path / "nope.yaml")
    assert "evalrs2022" in message
