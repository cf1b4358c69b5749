"""Intervals on accuracy differences, the exact McNemar test, and their rendering."""

import math

import numpy as np
import pytest

from stnlab.report import significance as sig
from stnlab.report.significance import Difference


def _pair(n: int, only_a: int, only_b: int, both: int) -> tuple[np.ndarray, np.ndarray]:
    """One run each over n images: ``only_a``/``only_b`` discordant, ``both`` right for both."""
    a, b = np.zeros(n, bool), np.zeros(n, bool)
    a[:only_a] = True
    b[only_a : only_a + only_b] = True
    a[only_a + only_b : only_a + only_b + both] = b[only_a + only_b : only_a + only_b + both] = True
    perm = np.random.default_rng(n + only_a).permutation(n)
    return a[perm], b[perm]


def _designs(rng, n, runs, accuracies, *, shared=0.8, spread=0.0):
    """Synthetic (runs, N) correctness with known mean accuracy per design.

    A run of a design with accuracy p gets image i right when z < p + e, e ~ N(0, spread)
    per run, where z is the image's own difficulty u_i (with probability ``shared``, which
    pairs the designs on hard images) or fresh noise: P(right) = p + e, so E = p.
    """
    u = rng.random(n)
    out = []
    for p in accuracies:
        threshold = p + spread * rng.standard_normal((runs, 1))  # (runs, 1)
        z = np.where(rng.random((runs, n)) < shared, u, rng.random((runs, n)))  # (runs, N)
        out.append(z < threshold)
    return out


# --- the interval -----------------------------------------------------------------------


def test_one_run_interval_matches_the_normal_approximation():
    a, b = _pair(4000, 90, 50, 3700)
    d = sig.accuracy_difference(a, b, resamples=20_000)
    diff = a.astype(float) - b.astype(float)  # per-image difference in {-1, 0, 1}
    sd = math.sqrt(diff.var() / len(diff))  # sd of the paired mean difference
    assert d.mean == pytest.approx(40 / 4000)
    assert d.low == pytest.approx(d.mean - 1.96 * sd, abs=0.1 * sd)
    assert d.high == pytest.approx(d.mean + 1.96 * sd, abs=0.1 * sd)


def test_run_spread_alone_gives_binomial_quantiles():
    # Every image scores alike within a run, so resampling images changes nothing and the
    # bootstrap mean of a is (number of right runs among 4 drawn) / 4 ~ Binomial(4, 3/4) / 4.
    n = 50
    a = np.array([[1] * n, [1] * n, [0] * n, [1] * n], bool)
    b = np.zeros((1, n), bool)
    d = sig.accuracy_difference(a, b, resamples=20_000, seed=1)
    cdf = np.cumsum([math.comb(4, k) * 0.75**k * 0.25 ** (4 - k) for k in range(5)])
    assert d.mean == 0.75
    assert d.low == np.searchsorted(cdf, 0.025) / 4  # 0.25: P(X <= 0) = 0.004 < 0.025
    assert d.high == np.searchsorted(cdf, 0.975) / 4  # 1.0


def _literal_bootstrap(a, b, resamples, seed):
    """The bootstrap written out: per resample, draw N image indices, then each design's runs."""
    rng = np.random.default_rng(seed)
    n, out = a.shape[1], np.empty(resamples)
    for k in range(resamples):
        images = rng.integers(n, size=n)
        ra, rb = rng.integers(len(a), size=len(a)), rng.integers(len(b), size=len(b))
        out[k] = a[np.ix_(ra, images)].mean() - b[np.ix_(rb, images)].mean()
    return np.quantile(out, [0.025, 0.975])


def test_interval_matches_the_literal_bootstrap():
    rng = np.random.default_rng(9)
    a, b = _designs(rng, 300, 3, (0.93, 0.9), spread=0.01)
    d = sig.accuracy_difference(a, b, resamples=20_000)
    low, high = _literal_bootstrap(a, b, 4000, seed=1)
    width = high - low
    assert d.low == pytest.approx(low, abs=0.06 * width)
    assert d.high == pytest.approx(high, abs=0.06 * width)


@pytest.mark.parametrize(
    ("runs", "spread", "truth"),
    [(1, 0.0, 0.01), (3, 0.003, 0.01), (3, 0.003, 0.0)],
    ids=["one run", "three runs", "three runs, no difference"],
)
def test_interval_covers_a_known_difference(runs, spread, truth):
    rng = np.random.default_rng(7)
    covered = 0
    for rep in range(200):
        a, b = _designs(rng, 1000, runs, (0.96 + truth, 0.96), spread=spread)
        d = sig.accuracy_difference(a, b, resamples=1000, seed=rep)
        covered += d.low <= truth <= d.high
    assert covered >= 0.90 * 200  # nominal 95%


def test_a_clear_difference_is_called():
    rng = np.random.default_rng(3)
    called = 0
    for rep in range(50):
        a, b = _designs(rng, 1000, 3, (0.99, 0.95), spread=0.003)
        called += sig.accuracy_difference(a, b, resamples=1000, seed=rep).called
    assert called == 50


def test_identical_predictions_are_not_called():
    rng = np.random.default_rng(0)
    (one,) = _designs(rng, 500, 1, (0.9,))
    d = sig.accuracy_difference(one, one)
    assert (d.mean, d.low, d.high, d.called) == (0.0, 0.0, 0.0, False)
    (three,) = _designs(rng, 500, 3, (0.9,), spread=0.01)
    d = sig.accuracy_difference(three, three)
    assert d.mean == 0 and d.low < 0 < d.high and not d.called


def test_seeded_and_order_free():
    rng = np.random.default_rng(5)
    a, b = _designs(rng, 300, 2, (0.95, 0.9))
    d1, d2 = sig.accuracy_difference(a, b, seed=4), sig.accuracy_difference(a, b, seed=4)
    assert d1 == d2
    perm = rng.permutation(300)  # the images' order does not matter (up to resampling noise)
    d3 = sig.accuracy_difference(a[:, perm], b[:, perm], seed=4)
    assert d3.mean == pytest.approx(d1.mean)
    assert d3.low == pytest.approx(d1.low, abs=0.005) and d3.high == pytest.approx(
        d1.high, abs=0.005
    )


def test_column_patterns_match_numpy_unique():
    rng = np.random.default_rng(2)
    columns = rng.random((500, 11)) < 0.8  # 11 runs: patterns span two packed bytes
    patterns, counts = sig._column_patterns(columns)
    ref, ref_counts = np.unique(columns, axis=0, return_counts=True)
    assert sorted(zip(map(tuple, patterns.tolist()), counts.tolist(), strict=True)) == sorted(
        zip(map(tuple, ref.tolist()), ref_counts.tolist(), strict=True)
    )


def test_inputs_are_not_changed_and_accept_0_1():
    a = np.array([[1, 0, 1, 1], [1, 1, 1, 0]])
    before = a.copy()
    d = sig.accuracy_difference(a, [0, 0, 1, 1])
    assert np.array_equal(a, before) and d.runs == (2, 1) and d.images == 4
    assert d.mean == pytest.approx(0.75 - 0.5)


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        (np.ones((2, 5), bool), np.ones((2, 6), bool), "different test sets: 5 vs 6"),
        (np.full((1, 3), 2), np.ones((1, 3), bool), "bool or 0/1"),
        (np.ones((1, 0), bool), np.ones((1, 0), bool), "N > 0"),
        (np.ones((1, 2, 3), bool), np.ones((1, 3), bool), r"\(runs, N\)"),
    ],
)
def test_bad_input_is_refused(a, b, message):
    with pytest.raises(ValueError, match=message):
        sig.accuracy_difference(a, b)


# --- McNemar ------------------------------------------------------------------------------


def test_mcnemar_worked_example():
    a, b = _pair(100, 9, 2, 80)
    result = sig.mcnemar(a, b)
    # Discordant pairs: 9 for a, 2 for b, n = 11. Under H0 each falls either way with
    # probability 1/2: P(X <= 2) = (C(11,0) + C(11,1) + C(11,2)) / 2^11 = (1 + 11 + 55) / 2048.
    assert (result.only_a, result.only_b) == (9, 2)
    assert result.p_value == 2 * 67 / 2048  # 0.0654296875: not significant at 5%
    assert not result.called


def test_mcnemar_edge_cases():
    a, b = _pair(40, 0, 0, 30)
    assert sig.mcnemar(a, b).p_value == 1.0  # no discordant pairs
    a, b = _pair(40, 5, 5, 30)
    assert sig.mcnemar(a, b).p_value == 1.0  # balanced: capped at 1
    a, b = _pair(40, 0, 6, 30)
    assert sig.mcnemar(a, b).p_value == 2 / 2**6  # the most extreme split of 6
    with pytest.raises(ValueError, match="one run per design"):
        sig.mcnemar(np.ones((2, 4), bool), np.ones((1, 4), bool))


@pytest.mark.parametrize(("only_a", "only_b"), [(9, 2), (60, 35), (400, 451), (3, 3)])
def test_mcnemar_matches_scipy(only_a, only_b):
    stats = pytest.importorskip("scipy.stats")
    a, b = _pair(2000, only_a, only_b, 1000)
    expected = stats.binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue
    assert sig.mcnemar(a, b).p_value == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("only_a", "only_b", "called"),
    [(40, 10, True), (10, 40, True), (25, 5, True), (20, 20, False), (12, 9, False), (0, 0, False)],
)
def test_interval_agrees_with_mcnemar_on_clear_and_null_cases(only_a, only_b, called):
    a, b = _pair(1000, only_a, only_b, 900)
    assert sig.mcnemar(a, b).called == called
    assert sig.accuracy_difference(a, b).called == called


def test_interval_agrees_with_mcnemar_on_random_pairs():
    rng = np.random.default_rng(11)
    checked = 0
    for rep in range(100):
        only_a, only_b = rng.integers(0, 40, size=2)
        a, b = _pair(800, int(only_a), int(only_b), 700)
        p = sig.mcnemar(a, b).p_value
        if 0.01 < p < 0.2:
            continue  # borderline: two valid tests may disagree there
        checked += 1
        assert sig.accuracy_difference(a, b, seed=rep).called == (p < 0.05), (only_a, only_b)
    assert checked > 50


# --- comparing designs and rendering ------------------------------------------------------


def test_compare_designs_keys_later_minus_earlier():
    rng = np.random.default_rng(4)
    cnn, stn, mstn = _designs(rng, 400, 2, (0.9, 0.95, 0.96))
    out = sig.compare_designs({"cnn": cnn, "stn": stn, "mstn": mstn}, resamples=200)
    assert list(out) == [("stn", "cnn"), ("mstn", "cnn"), ("mstn", "stn")]
    assert out[("stn", "cnn")].mean == pytest.approx(stn.mean() - cnn.mean())


def _d(mean, low, high, runs=(3, 3)):
    return Difference(mean, low, high, 0.95, runs, 1000)


def test_format_difference():
    assert (
        sig.format_difference("stn", "cnn", _d(0.0123, 0.0041, 0.0205))
        == "stn − cnn: +1.23 points [0.41, 2.05], significant"
    )
    assert (
        sig.format_difference("mstn", "stn", _d(-0.002, -0.0071, 0.003))
        == "mstn − stn: -0.20 points [-0.71, 0.30], within noise"
    )


def test_significance_markdown_rows():
    table = sig.significance_markdown(
        {
            100: {("stn", "cnn"): _d(0.0123, 0.0041, 0.0205)},
            20: {("stn", "cnn"): _d(0.001, -0.004, 0.006, runs=(1, 1))},
        }
    )
    lines = table.splitlines()
    assert "95% interval" in lines[0]
    assert lines[2] == "| epochs | difference | points | interval | runs | verdict |"
    assert lines[4] == "| 20 | stn − cnn | +0.10 | [-0.40, 0.60] | 1 vs 1 | within noise |"
    assert lines[5] == "| 100 | stn − cnn | +1.23 | [0.41, 2.05] | 3 vs 3 | significant |"


ACC = {"cnn": 0.970, "stn": 0.980, "mstn": 0.984}
SIG, NOISE = _d(0.01, 0.004, 0.016), _d(0.004, -0.002, 0.01)


def test_ranking_every_difference_significant():
    pairs = {("stn", "cnn"): SIG, ("mstn", "cnn"): SIG, ("mstn", "stn"): SIG}
    text = sig.ranking_sentence(ACC, pairs)
    assert text == "mstn 98.40% > stn 98.00% > cnn 97.00% (every difference significant)"


def test_ranking_says_within_noise():
    pairs = {("stn", "cnn"): SIG, ("mstn", "cnn"): SIG, ("mstn", "stn"): NOISE}
    text = sig.ranking_sentence(ACC, pairs)
    assert text == "mstn 98.40% ≈ stn 98.00% > cnn 97.00% (within noise: mstn vs stn)"
    pairs = {k: NOISE for k in pairs}
    assert sig.ranking_sentence(ACC, pairs).endswith("(every difference within noise)")


def test_ranking_names_pairs_the_chain_would_misstate():
    # Neither neighbour gap is significant, but the outer one is.
    pairs = {("stn", "cnn"): NOISE, ("mstn", "stn"): NOISE, ("mstn", "cnn"): SIG}
    text = sig.ranking_sentence(ACC, pairs)
    assert text == (
        "mstn 98.40% ≈ stn 98.00% ≈ cnn 97.00% "
        "(within noise: mstn vs stn, stn vs cnn; significant: mstn > cnn)"
    )
    # Both neighbour gaps significant, the outer one not (possible with wide intervals).
    pairs = {("stn", "cnn"): SIG, ("mstn", "stn"): SIG, ("mstn", "cnn"): NOISE}
    text = sig.ranking_sentence(ACC, pairs)
    assert text.endswith("> cnn 97.00% (within noise: mstn vs cnn)")


def test_ranking_of_one_design_and_missing_pairs():
    assert sig.ranking_sentence({"cnn": 0.9}, {}) == "cnn 90.00%"
    with pytest.raises(KeyError, match="no comparison of stn and cnn"):
        sig.ranking_sentence({"cnn": 0.9, "stn": 0.95}, {})
