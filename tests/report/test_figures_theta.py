"""Smoke tests of stnlab.report.theta_figures on arrays shaped like a real study's."""

from __future__ import annotations

import io

import numpy as np
import torch
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from stnlab import diagnostics as D
from stnlab import transforms as T
from stnlab.report import theta_figures as figures_theta


def test_theta_curves_draws_each_transformer_of_each_design():
    rng = np.random.default_rng(0)
    epochs = np.arange(1, 6)
    history = {
        "stn": (epochs, rng.uniform(0.5, 1.5, (1, 3, 5)), rng.uniform(0, 0.3, (1, 3, 5))),
        "mstn": (epochs, rng.uniform(0.5, 1.5, (2, 3, 5)), rng.uniform(0, 0.3, (2, 3, 5))),
        "icstn": (epochs[:2], rng.uniform(0.5, 1.5, (2, 1, 2)), rng.uniform(0, 0.3, (2, 1, 2))),
    }
    fig = figures_theta.theta_curves(history)
    assert isinstance(fig, Figure)
    left, right = fig.axes
    for ax in (left, right):
        drawn = [line for line in ax.lines if line.get_label() and line.get_label()[0] != "_"]
        assert len(drawn) == 5  # 1 + 2 + 2 transformers
        assert [line.get_linestyle() for line in drawn] == ["-", "-", "--", "-", "--"]
        bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert len(bands) == 3  # a min–max band only where there are several runs
    assert left.get_yscale() == "log"
    fig.savefig(io.BytesIO(), format="png")


def test_theta_distribution_of_measured_theta():
    torch.manual_seed(1)
    n = 60
    labels = np.arange(n) % 10
    affine = T.get("affine").identity(n) + 0.1 * torch.randn(n, 6)
    tps = T.get("tps").identity(n) + 0.02 * torch.randn(n, 32)
    parts = {
        "stn transformers.0": D.measure(affine, 40, 40, "affine"),
        "tps transformers.0": D.measure(tps, 40, 40, "tps"),
    }
    parts = {k: {q: v.numpy() for q, v in p.items()} for k, p in parts.items()}
    fig = figures_theta.theta_distribution(parts, labels)
    axes = np.array(fig.axes).reshape(2, -1)[:, :3]
    scale, rotation, shift = axes[0]
    assert len(scale.patches) == 60 and len(rotation.patches) == 30  # two histograms, one
    assert len(shift.collections) == 10  # one scatter per digit
    assert shift.yaxis_inverted()
    assert "no scale" in axes[1, 0].texts[0].get_text()  # tps: no matrix, no scale
    assert len(axes[1, 2].collections) == 10
    fig.savefig(io.BytesIO(), format="png")
