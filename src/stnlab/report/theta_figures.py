"""Figures of what the transformers learned: θ's statistics per epoch and on the test set.

Arrays in, a matplotlib Figure out, like :mod:`stnlab.report.figures` (whose colours and bands
these share); the figures' quantities are those of :func:`stnlab.diagnostics.measure`.
Nothing here reads files or models.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, MaxNLocator, NullFormatter

from stnlab.report.figures import _band, _subplots, colors
from stnlab.train.monitor import AREA_RATIO_MAX, AREA_RATIO_MIN, OUTSIDE_MAX

__all__ = ["theta_curves", "theta_distribution"]

_STYLES = ("-", "--", ":", "-.")  # first, second, ... transformer of a design


def _limit(ax, y: float, text: str) -> None:
    """A grey reference line at height y, named at its right end."""
    ax.axhline(y, color="grey", lw=1, ls="-" if text == "identity" else ":", zorder=0)
    where = {"xycoords": ("axes fraction", "data"), "textcoords": "offset points"}
    ax.annotate(
        text, (1, y), xytext=(-3, 2), ha="right", va="bottom", fontsize=8, color="grey", **where
    )


def theta_curves(history: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Figure:
    """Area ratio and out-of-image fraction per epoch, per transformer of each design.

    Args:
        history: design -> (epochs (E,), area ratio (T, R, E), outside fraction (T, R, E)),
            T transformers and R runs; each value is that epoch's median over the fixed
            validation batch (``area_ratio_median``, ``outside_fraction_median``).

    Lines are the mean over runs with a min–max band; colour is the design, line style
    the transformer (solid first, dashed second). Grey lines mark the collapse limits.
    """
    fig, (left, right) = _subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    palette = colors(list(history))
    for name, (epochs, area, outside) in history.items():
        marker = None if len(epochs) > 30 else "o"
        for k in range(len(area)):
            label = name if len(area) == 1 else f"{name} transformer {k + 1}"
            for ax, values in ((left, area[k]), (right, 100 * np.asarray(outside[k]))):
                _band(ax, epochs, values, palette[name], label, marker=marker)
                ax.lines[-1].set_linestyle(_STYLES[k % len(_STYLES)])
    for y in (AREA_RATIO_MIN, 1, AREA_RATIO_MAX):
        _limit(left, y, "identity" if y == 1 else "collapse limit")
    _limit(right, 100 * OUTSIDE_MAX, "collapse limit")
    left.set(xlabel="epoch", ylabel="sampled area / image area (median)", yscale="log")
    left.set_yticks([AREA_RATIO_MIN, 0.1, 0.25, 0.5, 1, 2, AREA_RATIO_MAX])
    left.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    left.yaxis.set_minor_formatter(NullFormatter())
    left.set_title("Area ratio (< 1: zooms in, > 1: zooms out)")
    right.set(xlabel="epoch", ylabel="sampling points off the image (%, median)", ylim=(-2, 102))
    right.set_title("Out-of-image fraction (they read padding)")
    for ax in (left, right):
        ax.grid(alpha=0.3, which="both")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
    fig.suptitle("What the transformers learned: θ on a fixed validation batch, per epoch")
    return fig


def _no_matrix(ax, what: str) -> None:
    """A grey note in place of a panel that only a matrix family has."""
    ax.text(
        0.5,
        0.5,
        f"no {what}\n(not a matrix family)",
        ha="center",
        va="center",
        transform=ax.transAxes,
        color="grey",
    )
    ax.set(xticks=[], yticks=[])


def theta_distribution(parts: Mapping[str, Mapping[str, np.ndarray]], labels: np.ndarray) -> Figure:
    """Scale and rotation histograms and the centre shift coloured by digit, one row each.

    Args:
        parts: row title (e.g. ``"stn transformers.0"``) -> per-sample figures of
            :func:`stnlab.diagnostics.measure` on the test set as arrays (N,):
            ``shift_x_px``, ``shift_y_px`` and, for matrix families, ``scale_x``,
            ``scale_y`` and ``rotation_deg``.
        labels: the true digit of each test image (N,).
    """
    fig, axes = _subplots(
        len(parts), 3, (13, 3.4 * len(parts) + 0.6), squeeze=False, layout="constrained"
    )
    for (title, p), (scale, rotation, shift) in zip(parts.items(), axes, strict=True):
        if "scale_x" in p:
            _scale_and_rotation(scale, rotation, p)
        else:
            _no_matrix(scale, "scale")
            _no_matrix(rotation, "rotation")
        _centre_shift(shift, p["shift_x_px"], p["shift_y_px"], labels)
        scale.set_title(f"{title}: scale", fontsize=10)
        rotation.set_title(f"{title}: rotation", fontsize=10)
        shift.set_title(f"{title}: where the output's centre looks", fontsize=10)
        for ax in (scale, rotation, shift):
            ax.grid(alpha=0.3)
    fig.suptitle("What the transformers learned: θ on the test set")
    return fig


def _scale_and_rotation(scale, rotation, p: Mapping[str, np.ndarray]) -> None:
    """Histograms of a matrix family's scales along x and y and of its rotation."""
    for key, color in (("scale_x", "#1f77b4"), ("scale_y", "#ff7f0e")):
        scale.hist(p[key], bins=30, alpha=0.6, color=color, label=key.replace("_", " "))
    scale.axvline(1, color="grey", lw=1)
    scale.set(xlabel="scale (< 1: zooms in)", ylabel="images")
    scale.legend(fontsize=8)
    rotation.hist(p["rotation_deg"], bins=30, color="#2ca02c", alpha=0.8)
    rotation.axvline(0, color="grey", lw=1)
    rotation.set(xlabel="rotation (degrees)", ylabel="images")


def _centre_shift(ax, x: np.ndarray, y: np.ndarray, labels: np.ndarray) -> None:
    """Where the output's centre looks (x, y in input pixels, (N,) each), coloured by digit."""
    digits = colormaps["tab10"].colors
    for d in np.unique(labels):
        mine = labels == d
        ax.scatter(x[mine], y[mine], s=6, color=digits[int(d) % 10], label=str(d))
    ax.axhline(0, color="grey", lw=1)
    ax.axvline(0, color="grey", lw=1)
    ax.set(xlabel="centre shift x (input px)", ylabel="centre shift y (px, down)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.invert_yaxis()  # as on the image: y points down
    ax.legend(
        title="digit", fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5)
    )
