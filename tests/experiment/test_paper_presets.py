"""The STN paper's presets: their runs, cells and schedule, as a dry run plans them; and the
paper's optimizer and learning-rate schedule."""

from __future__ import annotations

import itertools

import pytest
import torch

from stnlab import models
from stnlab.config import TrainConfig
from stnlab.config.errors import ConfigError
from stnlab.config.presets import preset
from stnlab.experiment.planning import plan, run_config
from stnlab.train.loop import _optimizer, lr_factor

DESIGNS = ("fcn", "paper-cnn", "st-fcn", "st-cnn")
COLUMNS = ("rotated", "rts", "projective-paper", "elastic")
FAMILIES = ("affine", "projective", "tps")


@pytest.mark.parametrize("name, epochs", [("paper-distorted", 150), ("paper-distorted-cpu", 25)])
def test_paper_distorted_is_every_column_family_design_and_seed(name, epochs):
    config = preset(name)
    jobs = plan(config)
    # The transformers' designs train in every cell; fcn and paper-cnn, which have none,
    # once per column for all three families.
    expected = {
        f"{m}-e{epochs}-s{s}_variant={v}_transform={t}"
        for v, t, m, s in itertools.product(COLUMNS, FAMILIES, DESIGNS[2:], (0, 1, 2))
    } | {
        f"{m}-e{epochs}-s{s}_variant={v}"
        for v, m, s in itertools.product(COLUMNS, DESIGNS[:2], (0, 1, 2))
    }
    assert len(jobs) == 4 * 3 * 2 * 3 + 4 * 2 * 3 == len(expected)
    assert {j.name for j in jobs} == expected
    served = [(c, j.model, j.seed) for j in jobs for c in j.cells]
    assert len(served) == len(set(served)) == 4 * 3 * 4 * 3  # every (cell, design, seed) once
    for job in jobs:
        cell = dict(job.cell)
        run = run_config(config, job)
        assert (run.data.variant, run.model.transform) == (
            cell["data.variant"],
            cell["model.transform"],
        )
        assert (run.model.name, run.train.seed, run.train.epochs) == (job.model, job.seed, epochs)
        assert all(dict(c)["data.variant"] == cell["data.variant"] for c in job.cells)
        if job.model in DESIGNS[:2]:
            assert cell["model.transform"] == "affine" and len(job.cells) == 3
        else:
            assert job.cells == (job.cell,)


@pytest.mark.parametrize("name, epochs", [("paper-cluttered", 150), ("paper-cluttered-cpu", 25)])
def test_paper_cluttered_is_the_four_designs_on_the_stn_layout(name, epochs):
    config = preset(name)
    jobs = plan(config)
    assert sorted(j.name for j in jobs) == sorted(
        f"{m}-e{epochs}-s{s}" for m in DESIGNS for s in (0, 1, 2)
    )
    assert all(j.cell == () for j in jobs)
    assert config.data.variant == "60x60-stn"
    assert config.model.transform == "affine"


@pytest.mark.parametrize("name", ["paper-distorted", "paper-cluttered"])
def test_the_faithful_presets_train_as_the_paper(name):
    config = preset(name)
    t = config.train
    assert (t.optimizer, t.batch_size, t.lr, t.schedule) == ("sgd", 256, 0.01, "thirds")
    # 150,000 iterations of 256, divided by 10 after 50,000 and 100,000.
    assert config.iterations * max(config.budgets) == 150_000
    steps = [lr_factor(t.schedule, e, 150) for e in range(1, 151)]
    assert steps == [1.0] * 50 + [pytest.approx(0.1)] * 50 + [pytest.approx(0.01)] * 50
    assert (config.data.source, config.data.sizes) == ("mnist", (50_000, 10_000, 10_000))


def test_the_cpu_scale_is_the_faithful_one_shrunk():
    full, cpu = preset("paper-distorted"), preset("paper-distorted-cpu")
    assert cpu.iterations * max(cpu.budgets) * 150 == full.iterations * max(full.budgets)
    assert (cpu.train.optimizer, cpu.train.lr, cpu.train.schedule) == ("adam", 1e-3, "thirds")
    assert cpu.grid == full.grid and cpu.models == full.models


def test_sgd_is_plain_sgd_with_the_configured_rate():
    model = models.create("fcn", in_size=28)
    opt = _optimizer(model, TrainConfig(optimizer="sgd", lr=0.01, weight_decay=0.0))
    assert isinstance(opt, torch.optim.SGD)
    assert opt.param_groups[0]["lr"] == 0.01 and opt.param_groups[0]["momentum"] == 0
    x = torch.rand(3, 1, 28, 28)
    before = [p.detach().clone() for p in model.parameters()]
    opt.zero_grad()
    model(x).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    opt.step()
    for b, g, p in zip(before, grads, model.parameters(), strict=True):
        torch.testing.assert_close(p.detach(), b - 0.01 * g)  # the textbook update


def test_an_unknown_optimizer_is_refused():
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")
