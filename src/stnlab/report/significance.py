"""Is one design's test accuracy really higher than another's? Intervals on differences.

Inputs are per-sample correctness: for one budget, a bool array (runs, N) per design over
the same N test images (``predictions == labels`` of each run). :func:`accuracy_difference`
gives the mean difference with a 95% interval from a bootstrap that resamples the test
images (shared by both designs: paired) and, independently, each design's runs, so the
interval carries both the finite test set and the spread over seeds. A difference is
*called* only when its interval excludes zero. :func:`mcnemar` is the exact test for one
run per design, the reference the bootstrap is checked against. The rendering functions
take these results and return markdown or one sentence. numpy only: no torch.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> cnn = rng.random((3, 1000)) < 0.95  # (runs, N) correct or not
    >>> stn = rng.random((3, 1000)) < 0.99
    >>> d = accuracy_difference(stn, cnn)
    >>> d.called, round(100 * d.mean, 1)
    (True, 3.8)
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "Difference",
    "Estimate",
    "McNemar",
    "accuracy_difference",
    "compare_designs",
    "error_interval",
    "error_ratio",
    "format_difference",
    "mcnemar",
    "ranking_sentence",
    "significance_markdown",
]

LEVEL = 0.95  # two-sided coverage of the intervals
RESAMPLES = 4000  # bootstrap resamples: the 2.5% tails rest on 100 draws each
MCNEMAR_ALPHA = 0.05  # the exact test's level matching LEVEL


@dataclass(frozen=True)
class Difference:
    """Test-accuracy difference a − b (fractions, not points) at one budget, with its interval."""

    mean: float  # mean accuracy of a's runs minus that of b's runs
    low: float
    high: float
    level: float  # the interval's coverage, e.g. 0.95
    runs: tuple[int, int]  # runs of a and of b
    images: int  # N, the test images both were scored on

    @property
    def called(self) -> bool:
        """Whether the difference is significant: its interval excludes zero."""
        return self.low > 0 or self.high < 0

    def negated(self) -> Difference:
        """The same comparison as b − a."""
        runs = (self.runs[1], self.runs[0])
        return Difference(-self.mean, -self.high, -self.low, self.level, runs, self.images)


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test of one run per design on the same images."""

    only_a: int  # images a gets right and b wrong
    only_b: int  # images b gets right and a wrong
    p_value: float  # two-sided, exact binomial(only_a + only_b, 1/2)

    @property
    def called(self) -> bool:
        """Whether the two designs differ at level ``MCNEMAR_ALPHA``."""
        return self.p_value < MCNEMAR_ALPHA


def _as_runs(correct: ArrayLike, name: str) -> np.ndarray:
    """Check per-sample correctness and return it as bool (runs, N); (N,) is one run."""
    arr = np.asarray(correct)
    if arr.ndim == 1:
        arr = arr[None]  # (1, N)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"{name}: expected (runs, N) correctness with N > 0, got {arr.shape}")
    if arr.dtype != bool and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name}: correctness must be bool or 0/1")
    return arr.astype(bool)


def _paired(correct_a: ArrayLike, correct_b: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Both designs' correctness, checked to cover the same number of images."""
    a, b = _as_runs(correct_a, "correct_a"), _as_runs(correct_b, "correct_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"designs scored on different test sets: {a.shape[1]} vs {b.shape[1]}")
    return a, b


def _resampled_run_mean(correct: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per resample, the mean over runs drawn with replacement: (B, R) -> (B,)."""
    pick = rng.integers(correct.shape[1], size=correct.shape)  # (B, R) run indices
    return np.take_along_axis(correct, pick, axis=1).mean(1)


def _column_patterns(columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of bool (N, R) and how often each occurs: (K, R), (K,)."""
    packed = np.ascontiguousarray(np.packbits(columns, axis=1))  # (N, ceil(R / 8)) uint8
    keys = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()  # one bytes key per row
    _, first, counts = np.unique(keys, return_index=True, return_counts=True)
    return columns[first], counts


def _bootstrap(a: np.ndarray, b: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Differences of mean accuracy over ``resamples`` joint resamples of images and runs."""
    mean_a, mean_b = _bootstrap_means(a, b, resamples, seed)
    return mean_a - mean_b


def _bootstrap_means(
    a: np.ndarray, b: np.ndarray, resamples: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean accuracy of a and of b over ``resamples`` joint resamples of images and runs."""
    rng = np.random.default_rng(seed)
    n = a.shape[1]
    # Resampling N images with replacement only changes how often each distinct column
    # (one image's correctness in every run of both designs) occurs: draw those counts.
    patterns, counts = _column_patterns(np.concatenate([a, b]).T)  # (K, Ra + Rb), (K,)
    weights = rng.multinomial(n, counts / n, size=resamples)  # (B, K) images per pattern
    correct = weights.astype(np.float64) @ patterns / n  # (B, Ra + Rb) accuracy of each run
    ra = len(a)
    return _resampled_run_mean(correct[:, :ra], rng), _resampled_run_mean(correct[:, ra:], rng)


@dataclass(frozen=True)
class Estimate:
    """A statistic with its percentile-bootstrap interval."""

    value: float
    low: float
    high: float

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high


def _interval(samples: np.ndarray, value: float, level: float) -> Estimate:
    tail, finite = (1 - level) / 2, samples[np.isfinite(samples)]
    if not len(finite):  # a ratio over designs that made no error anywhere
        return Estimate(float(value), float("nan"), float("nan"))
    low, high = np.quantile(finite, [tail, 1 - tail])
    return Estimate(float(value), float(low), float(high))


def error_interval(
    correct: ArrayLike, *, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0
) -> Estimate:
    """A design's mean test error, with its interval over test images and runs."""
    c = _as_runs(correct, "correct")
    accuracy, _ = _bootstrap_means(c, c, resamples, seed)
    return _interval(1 - accuracy, 1 - c.mean(), level)


def error_ratio(
    correct_a: ArrayLike,
    correct_b: ArrayLike,
    *,
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Estimate:
    """Mean test error of a over that of b (below 1: a errs less), with a paired interval
    (the same images resampled for both, each design's runs on their own)."""
    a, b = _paired(correct_a, correct_b)
    mean_a, mean_b = _bootstrap_means(a, b, resamples, seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = (1 - mean_a) / (1 - mean_b)
        value = (1 - a.mean()) / (1 - b.mean()) if b.mean() < 1 else float("nan")
    return _interval(ratios, value, level)


def accuracy_difference(
    correct_a: ArrayLike,
    correct_b: ArrayLike,
    *,
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Difference:
    """Mean test accuracy of a minus b, with a percentile-bootstrap interval at ``level``.

    Each resample draws the N test images with replacement (the same images for both
    designs, which keeps the pairing) and, for each design, its runs with replacement.

    Args:
        correct_a: bool (runs_a, N), or (N,) for one run: which test images a got right.
        correct_b: bool (runs_b, N) over the same N images, in the same order.
        level: the interval's two-sided coverage.
        resamples: bootstrap resamples; seeded by ``seed``, so the result is reproducible.

    Example:
        >>> accuracy_difference([[1, 1, 0, 1]], [[1, 1, 0, 1]]).called
        False
    """
    if not 0 < level < 1 or resamples < 1:
        raise ValueError(f"need 0 < level < 1 and resamples >= 1, got {level}, {resamples}")
    a, b = _paired(correct_a, correct_b)
    diffs = _bootstrap(a, b, resamples, seed)
    tail = (1 - level) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail])
    mean = a.mean() - b.mean()
    return Difference(float(mean), float(low), float(high), level, (len(a), len(b)), a.shape[1])


def _binomial_tail(k: int, n: int) -> float:
    """P(X <= k) for X ~ binomial(n, 1/2), exactly (integer arithmetic, one rounding)."""
    term, total = 1, 1  # C(n, 0)
    for i in range(k):
        term = term * (n - i) // (i + 1)  # C(n, i + 1), exact
        total += term
    return total / 2**n


def mcnemar(correct_a: ArrayLike, correct_b: ArrayLike) -> McNemar:
    """Exact two-sided McNemar test of one run of a against one run of b.

    Under no difference, the discordant images (right for exactly one design) fall on
    either side with probability 1/2; p = min(1, 2 · P(X <= min(only_a, only_b))).

    Example:
        >>> mcnemar([1, 1, 1, 0], [0, 0, 1, 0]).only_a
        2
    """
    a, b = _paired(correct_a, correct_b)
    if len(a) != 1 or len(b) != 1:
        raise ValueError(f"McNemar's test takes one run per design, got {len(a)} and {len(b)}")
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    n = only_a + only_b
    p = 1.0 if n == 0 else min(1.0, 2 * _binomial_tail(min(only_a, only_b), n))
    return McNemar(only_a, only_b, p)


def compare_designs(
    correct: Mapping[str, ArrayLike],
    *,
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[tuple[str, str], Difference]:
    """Every pair of designs at one budget, keyed ``(later, earlier)`` in ``correct``'s order.

    ``correct`` maps a design's name to its (runs, N) correctness; the key ``("stn", "cnn")``
    holds stn − cnn when cnn comes first.
    """
    names = list(correct)
    out = {}
    for j, later in enumerate(names):
        for earlier in names[:j]:
            out[(later, earlier)] = accuracy_difference(
                correct[later], correct[earlier], level=level, resamples=resamples, seed=seed
            )
    return out


def _verdict(d: Difference) -> str:
    return "significant" if d.called else "within noise"


def format_difference(a: str, b: str, d: Difference) -> str:
    """``stn − cnn: +1.23 points [0.41, 2.05], significant`` (or ``within noise``)."""
    points = f"{100 * d.mean:+.2f} points [{100 * d.low:.2f}, {100 * d.high:.2f}]"
    return f"{a} − {b}: {points}, {_verdict(d)}"


def significance_markdown(comparisons: Mapping[int, Mapping[tuple[str, str], Difference]]) -> str:
    """A markdown table, one row per budget and pair: difference, interval, runs and verdict.

    ``comparisons`` maps a budget (epochs) to :func:`compare_designs`' result there.
    """
    levels = {d.level for pairs in comparisons.values() for d in pairs.values()}
    pct = f"{100 * levels.pop():g}%" if len(levels) == 1 else "the stated"
    lines = [
        f"Difference in test accuracy (points) with its {pct} interval, from a bootstrap over "
        "test images (paired) and runs; a difference is significant when its interval "
        "excludes zero.",
        "",
        "| epochs | difference | points | interval | runs | verdict |",
        "|---:|---|---:|---|---|---|",
    ]
    for budget in sorted(comparisons):
        for (a, b), d in comparisons[budget].items():
            interval = f"[{100 * d.low:.2f}, {100 * d.high:.2f}]"
            runs = f"{d.runs[0]} vs {d.runs[1]}"
            row = [str(budget), f"{a} − {b}", f"{100 * d.mean:+.2f}", interval, runs, _verdict(d)]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _lookup(comparisons: Mapping[tuple[str, str], Difference], a: str, b: str) -> Difference:
    """a − b from ``comparisons``, whichever way round it is stored."""
    if (a, b) in comparisons:
        return comparisons[(a, b)]
    if (b, a) in comparisons:
        return comparisons[(b, a)].negated()
    raise KeyError(f"no comparison of {a} and {b}")


def ranking_sentence(
    accuracy: Mapping[str, float], comparisons: Mapping[tuple[str, str], Difference]
) -> str:
    """Designs by mean accuracy, ``>`` where the gap is significant and ``≈`` where it is not.

    Pairs the chain would misstate (a significant gap across a ``≈``, or none across a
    ``>``) are named, so the sentence is true of every pair. ``accuracy`` holds fractions.

    Example:
        >>> d = Difference(0.01, -0.002, 0.02, 0.95, (3, 3), 1000)  # stn − cnn
        >>> ranking_sentence({"cnn": 0.97, "stn": 0.98}, {("stn", "cnn"): d})
        'stn 98.00% ≈ cnn 97.00% (every difference within noise)'
    """
    order = sorted(accuracy, key=lambda m: -accuracy[m])  # stable: ties keep the given order
    called = {
        (x, y): _lookup(comparisons, x, y).called
        for i, x in enumerate(order)
        for y in order[i + 1 :]
    }
    steps = [">" if called[(x, y)] else "≈" for x, y in itertools.pairwise(order)]
    chain = f"{order[0]} {100 * accuracy[order[0]]:.2f}%"
    for step, m in zip(steps, order[1:], strict=True):
        chain += f" {step} {m} {100 * accuracy[m]:.2f}%"
    if not steps:
        return chain
    if all(called.values()):
        return f"{chain} (every difference significant)"
    if not any(called.values()):
        return f"{chain} (every difference within noise)"
    noise, significant = [], []
    for (x, y), is_called in called.items():
        i, j = order.index(x), order.index(y)
        implied = ">" in steps[i:j]  # what a reader takes from the chain
        if is_called and not implied:
            significant.append(f"{x} > {y}")
        elif not is_called and (implied or j == i + 1):
            noise.append(f"{x} vs {y}")
    notes = [f"within noise: {', '.join(noise)}"] if noise else []
    notes += [f"significant: {', '.join(significant)}"] if significant else []
    return f"{chain} ({'; '.join(notes)})"
