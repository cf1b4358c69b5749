"""Tests of the report page and figures on hand-made experiment folders (no training)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from conftest import a_summary

from stnlab import models
from stnlab.cli import main
from stnlab.config import ExperimentConfig, RunConfig
from stnlab.config.errors import ReportError, RunFolderError
from stnlab.data import make_dataset, save
from stnlab.report import html as report
from stnlab.report import introspect, results
from stnlab.runs.experiment_folder import ExperimentDir
from stnlab.runs.records import EvalRecord, RunSummary, ThetaRecord, TrainRecord
from stnlab.runs.run_folder import Predictions
from stnlab.train import monitor

EPOCHS = (1, 2, 3)


def _fake_run(folder: ExperimentDir, name, model, seed, data, rng, size="small", theta=True):
    """A run folder as training leaves it (through RunDir), with made-up metrics and
    predictions, and the θ records of its (untrained) model unless ``theta`` is off (as an
    older stnlab left it)."""
    run = folder.run(name)
    torch.manual_seed(seed)
    m = models.create(model, size=size)
    run.path.mkdir(parents=True)
    run.write_config(RunConfig(model=m.config))
    run.save_weights(m)
    run.start_metrics()
    probe = monitor.ThetaProbe.of(m, data.x_valid, 10 if theta else 0, model)
    for e in EPOCHS:
        run.append(TrainRecord(epoch=e, loss=2.0 / e, accuracy=0.3 * e, lr=1e-3, seconds=1.0))
        for split in ("valid", "test"):
            accuracy = 0.2 * e + 0.01 * seed
            run.append(EvalRecord(e, split, accuracy, loss=1.0 / e, train_seconds=1.0 * e))
        for record in probe.records(m, e, 50 * e) if probe is not None else []:
            run.append(record)
    labels = data.y_test.numpy()
    wrong = rng.random((len(EPOCHS), len(labels))) < 0.3
    run.write_predictions(
        Predictions(
            labels=labels,
            epochs=np.array(EPOCHS),
            predictions=np.where(wrong, (labels + 1) % 10, labels),
            confidence=rng.uniform(0.3, 1.0, wrong.shape).astype(np.float32),
        )
    )
    run.write_summary(_summary(model, size, seed, models.count_parameters(m)))
    return run


def _summary(model: str, size: str, seed: int, parameters: int) -> RunSummary:
    return a_summary(
        model=model,
        size=size,
        epochs=EPOCHS[-1],
        seed=seed,
        train_seconds=3.0,
        parameters=parameters,
    )


def _fake_experiment(out, designs, seeds, theta=True):
    folder = ExperimentDir(out)
    data = make_dataset(sizes=(20, 10, 30))
    save(data, folder.data_file)
    config = ExperimentConfig(models=designs, budgets=EPOCHS, seeds=seeds)
    folder.write_record(config.to_dict(), True, folder.data_file)
    rng = np.random.default_rng(0)
    rows = []
    for model in designs:
        for seed in seeds:
            name = f"{model}-s{seed}"
            evs = _fake_run(folder, name, model, seed, data, rng, theta=theta).evaluations()
            for e in EPOCHS:
                rows.append(
                    {
                        "model": model,
                        "epochs": e,
                        "seed": seed,
                        "valid_accuracy": evs[(e, "valid")].accuracy,
                        "test_accuracy": evs[(e, "test")].accuracy,
                        "train_seconds": float(e),
                        "run": name,
                    }
                )
    folder.write_results(rows)
    return rows


def _images(page: str) -> list[str]:
    return re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)


def test_report_of_every_design(tmp_path):
    _fake_experiment(tmp_path, ("cnn", "stn", "mstn"), seeds=(0, 1))
    path = report.write_report(tmp_path, samples=4)
    page = path.read_text()
    names = [n for n in report.FIGURES if n not in ("grid", "paper")]  # no axes, no paper
    assert "differences" in names
    for name in names:
        png = tmp_path / "figures" / f"{name}.png"
        assert png.is_file() and png.stat().st_size > 5_000, name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(_images(page)) == len(names)
    assert re.findall(r'<img src="[^"]+" alt="([^"]+)"', page) == list(names)  # in page order
    assert all(len(data) > 5_000 for data in _images(page))
    for heading in (
        "Comparison of network results",
        "Sampled STN results",
        "What the transformers learned",
        "Harder digits to identify",
        "Training curves",
    ):
        assert heading in page
    assert "<table>" in page and "mstn" in page
    assert "95% interval" in page and "stn − cnn" in page and "mstn − stn" in page
    lead = re.search(r'<p class="lead">(.*?)</p>', page).group(1)
    assert "After 3 epochs" in lead and ("within noise" in lead or "significant" in lead)


def test_theta_curves_are_the_runs_records(tmp_path):
    _fake_experiment(tmp_path, ("stn", "mstn"), seeds=(0, 1))
    runs = [ExperimentDir(tmp_path).run(f"mstn-s{seed}") for seed in (0, 1)]
    epochs, area, outside = report._theta_curves(runs)
    assert list(epochs) == list(EPOCHS) and area.shape == outside.shape == (2, 2, len(EPOCHS))
    for r, run in enumerate(runs):
        for record in (x for x in run.records() if isinstance(x, ThetaRecord)):
            t, e = int(record.transformer[-1]), EPOCHS.index(record.epoch)
            assert area[t, r, e] == record.figures["area_ratio_median"]
            assert outside[t, r, e] == record.figures["outside_fraction_median"]
    assert area[0, 0, 0] == pytest.approx(0.49) and area[1, 0, 0] == 1  # the untrained starts


def test_report_of_runs_without_theta_records(tmp_path):
    _fake_experiment(tmp_path, ("cnn", "stn"), seeds=(0,), theta=False)  # an older stnlab's
    page = report.write_report(tmp_path).read_text()
    assert "What the transformers learned" in page and "No run recorded θ statistics" in page
    assert not (tmp_path / "figures" / "theta_curves.png").exists()
    assert (tmp_path / "figures" / "theta_distribution.png").stat().st_size > 5_000


def _rewrite_predictions(folder: ExperimentDir, run: str, predictions) -> None:
    """Replace a run's test predictions at every epoch, keeping its labels."""
    old = folder.run(run).predictions()
    folder.run(run).write_predictions(
        Predictions(
            labels=old.labels,
            epochs=old.epochs,
            predictions=predictions(old),
            confidence=old.confidence,
        )
    )


def test_significance_calls_a_real_difference_and_not_noise(tmp_path):
    rows = _fake_experiment(tmp_path, ("cnn", "stn"), seeds=(0, 1))
    folder = ExperimentDir(tmp_path)
    for seed in (0, 1):  # stn always right; cnn is wrong on ~30% (the fake runs)
        _rewrite_predictions(folder, f"stn-s{seed}", lambda p: np.tile(p.labels, (3, 1)))
    comparisons = results.compare(folder, rows)
    assert sorted(comparisons) == list(EPOCHS)
    for e in EPOCHS:
        d = comparisons[e][("stn", "cnn")]
        cnn_right = np.mean(
            [
                (folder.run(f"cnn-s{s}").predictions().at(e)[0] == d_labels).mean()
                for s in (0, 1)
                for d_labels in [folder.run("cnn-s0").predictions().labels]
            ]
        )
        assert d.called and d.low > 0
        assert d.mean == pytest.approx(1 - cnn_right)
    text = results.summary_markdown(rows, "t", comparisons=comparisons)
    assert "## Are the differences real?" in text and "significant" in text

    for seed in (0, 1):  # stn predicts exactly what cnn does: no difference to call
        twin = folder.run(f"cnn-s{seed}").predictions().predictions
        _rewrite_predictions(folder, f"stn-s{seed}", lambda p, twin=twin: twin)
    comparisons = results.compare(folder, rows)
    assert not any(d.called for by in comparisons.values() for d in by.values())
    text = results.summary_markdown(rows, "t", comparisons=comparisons)
    assert "every difference within noise" in text and "| significant |" not in text


def test_report_without_transformers_and_one_seed(tmp_path):
    _fake_experiment(tmp_path, ("cnn",), seeds=(3,))
    page = report.write_report(tmp_path).read_text()
    assert "No design in this experiment has a spatial transformer" in page
    for name in ("stn_samples", "theta_curves", "theta_distribution"):
        assert not (tmp_path / "figures" / f"{name}.png").exists()
    assert len(_images(page)) == 5  # every other figure still there


def test_report_without_data_file(tmp_path):
    _fake_experiment(tmp_path, ("stn",), seeds=(0,))
    report.write_report(tmp_path, samples=2)
    assert (tmp_path / "figures" / "stn_samples.png").is_file()
    (tmp_path / "data.npz").unlink()
    page = report.write_report(tmp_path).read_text()
    assert "data file is missing" in page
    assert (tmp_path / "figures" / "confusion.png").is_file()
    assert (tmp_path / "figures" / "theta_curves.png").is_file()  # from the records
    for name in ("stn_samples", "theta_distribution"):  # no stale figure kept
        assert not (tmp_path / "figures" / f"{name}.png").exists()


def test_report_errors(tmp_path, fails_with):
    with pytest.raises(RunFolderError, match=r"no results\.csv"):
        report.write_report(tmp_path)
    fails_with(["report", str(tmp_path)], "no results.csv")
    ExperimentDir(tmp_path).write_results([])
    with pytest.raises(ReportError, match="no rows"):
        report.write_report(tmp_path)
    fails_with(["report", str(tmp_path), "--samples", "0"], "--samples must be positive")


def test_report_command(tmp_path, capsys):
    _fake_experiment(tmp_path, ("cnn",), seeds=(0,))
    assert main(["report", str(tmp_path)]) == 0
    assert str(tmp_path / "report.html") in capsys.readouterr().out


def test_final_runs_picks_longest_run_per_seed():
    rows = [
        {"model": "stn", "epochs": 5, "seed": 1, "run": "stn-e5-s1"},
        {"model": "stn", "epochs": 9, "seed": 1, "run": "stn-e9-s1"},
        {"model": "stn", "epochs": 9, "seed": 0, "run": "stn-e9-s0"},
        {"model": "cnn", "epochs": 9, "seed": 0, "run": "cnn-e9-s0"},
    ]
    assert report.final_runs(rows) == {"stn": ["stn-e9-s0", "stn-e9-s1"], "cnn": ["cnn-e9-s0"]}


def test_outlines_identity_is_the_image_border():
    m = models.create("mstn", size="small", loc_zoom=1.0).eval()
    x = torch.rand(2, 1, 40, 40)
    thetas = [theta for _, theta in m.transform(x)]  # identity at initialisation
    first, second = introspect.outlines(m, thetas, (40, 40))
    assert first.shape == second.shape == (2, 4 * 48 - 4, 2)
    # Pixel edges are at -0.5 and 39.5; the outline runs through the outermost fine-grid centres.
    assert np.allclose(first.min(axis=1), -0.5 + 40 / 96, atol=1e-4)
    assert np.allclose(first.max(axis=1), 39.5 - 40 / 96, atol=1e-4)
    assert np.allclose(second, first, atol=0.05)  # stage 2 mapped back through stage 1


def test_outline_of_a_zoom_and_shift():
    from stnlab.transforms import Affine

    class One(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = models.create("stn").config
            from stnlab import SpatialTransformer

            self.transformers = torch.nn.ModuleList([SpatialTransformer(1, 40, transform=Affine())])

    theta = torch.tensor([[0.5, 0.0, 0.5, 0.0, 0.5, 0.0]])  # half size, right half of the image
    (line,) = introspect.outlines(One(), [theta], (40, 40))
    x, y = line[0, :, 0], line[0, :, 1]
    # x_s = 0.5 x_t + 0.5 spans [0, 1] -> pixels [19.5, 39.5]; y spans [-0.5, 0.5] -> [9.5, 29.5]
    assert x.min() == pytest.approx(19.5, abs=0.3) and x.max() == pytest.approx(39.5, abs=0.3)
    assert y.min() == pytest.approx(9.5, abs=0.3) and y.max() == pytest.approx(29.5, abs=0.3)


def test_summary_markdown_marks_best_and_handles_one_run():
    rows = [
        {"model": "cnn", "epochs": 2, "seed": 0, "test_accuracy": 0.5, "train_seconds": 1.0},
        {"model": "stn", "epochs": 2, "seed": 0, "test_accuracy": 0.7, "train_seconds": 2.0},
        {"model": "stn", "epochs": 2, "seed": 1, "test_accuracy": 0.2, "train_seconds": 2.0},
    ]
    text = results.summary_markdown(rows, "T", ["note"])
    assert "| 2 | **50.00** | 45.00 ± 35.36 (20.00–70.00) | cnn |" in text  # one run: value alone
    stats = results.summarize(rows)
    assert stats[("stn", 2)].runs == 2 and stats[("cnn", 2)].std == 0.0


def test_report_reads_the_final_epoch_of_each_run(tmp_path):
    _fake_experiment(tmp_path, ("cnn",), seeds=(0,))
    run = ExperimentDir(tmp_path).run("cnn-s0")
    p = run.predictions()
    final = report._predictions([run])
    np.testing.assert_array_equal(final["predictions"][0], p.at(EPOCHS[-1])[0])
    assert not np.array_equal(p.at(1)[0], p.at(EPOCHS[-1])[0])  # the epochs differ
