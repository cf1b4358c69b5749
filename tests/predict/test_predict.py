"""Tests for predict: images of any size in, digit and confidence out, the --show picture."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import SMALL, fixed_theta, perturb, saved_run
from PIL import Image

from stnlab import cli, models
from stnlab.config.errors import ConfigError, DataError
from stnlab.predict import load_image, picture, predict, show


def _png(path, size=(50, 30), dark_on_light=False):
    """A white bar on black (or the reverse), as an 8-bit grey PNG."""
    pixels = np.zeros(size[::-1], dtype=np.uint8)  # (H, W)
    pixels[5:-5, size[0] // 2 - 3 : size[0] // 2 + 3] = 255
    if dark_on_light:
        pixels = 255 - pixels
    Image.fromarray(pixels, mode="L").save(path)
    return path


def _run_dir(tmp_path, name="stn"):
    return saved_run(tmp_path / "run", perturb(models.create(name, **SMALL)))


def test_load_image_resizes_and_scales(tmp_path):
    x = load_image(_png(tmp_path / "a.png"), (24, 24))
    assert x.shape == (1, 1, 24, 24) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1 and x[0, 0, 12, 12] > 0.9 and x[0, 0, 0, 0] == 0


def test_load_image_inverts_dark_on_light(tmp_path):
    path = _png(tmp_path / "b.png", dark_on_light=True)
    auto = load_image(path, (24, 24))
    assert auto[0, 0, 0, 0] == 0 and auto[0, 0, 12, 12] > 0.9
    assert load_image(path, (24, 24), invert="no")[0, 0, 0, 0] == 1


def test_load_image_errors(tmp_path):
    with pytest.raises(DataError, match="no image file"):
        load_image(tmp_path / "none.png", (24, 24))
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(DataError, match="cannot read"):
        load_image(tmp_path / "bad.png", (24, 24))


def test_predict_gives_a_label_and_probability():
    model = models.create("cnn", **SMALL)
    (p, q) = predict(model, torch.rand(2, 1, 24, 24))
    assert 0 <= p.label < 10 and 0.1 <= p.confidence <= 1
    assert isinstance(q.label, int)


@pytest.mark.parametrize("name", ["stn", "mstn", "icstn"])
def test_show_draws_a_row_per_image(tmp_path, name):
    model = models.create(name, **SMALL)
    one = show(model, torch.rand(1, 1, 24, 24), tmp_path / "one.png")
    three = show(model, torch.rand(3, 1, 24, 24), tmp_path / "three.png", ["a", "b", "c"])
    h1, h3 = Image.open(one).size[1], Image.open(three).size[1]
    assert h3 > 2 * h1 * 0.8  # rows stack: three images make a much taller picture
    pixels = np.asarray(Image.open(three).convert("RGB"), dtype=np.int16)
    assert pixels.std() > 10  # not a blank canvas


def _turned(model: models.Model, scale: float, degrees: float) -> models.Model:
    """Every transformer predicts θ = scale · R(degrees) for every image."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return fixed_theta(model, [scale * c, -scale * s, 0, scale * s, scale * c, 0])


def _captions(fig) -> list[str]:
    return [ax.get_xlabel() for ax in fig.axes if ax.get_xlabel()]


def test_show_writes_area_ratio_and_rotation_under_each_output():
    model = _turned(models.create("stn", **SMALL), 0.5, 30)
    fig = picture(model, torch.rand(3, 1, 24, 24), ["a", "b", "c"])
    assert _captions(fig) == ["area 0.25, rotation +30°"] * 3  # 0.5² of the image, turned 30°
    mstn = _turned(models.create("mstn", **SMALL), 0.8, -45)
    assert _captions(picture(mstn, torch.rand(2, 1, 24, 24))) == ["area 0.64, rotation -45°"] * 4
    tps = models.create("stn", **SMALL, transform="tps")  # no rotation in a TPS: area only
    tps.transformers[0].reset_theta(0.5)
    assert _captions(picture(tps, torch.rand(1, 1, 24, 24))) == ["area 0.25"]


def test_show_refuses_a_model_without_transformer(tmp_path):
    with pytest.raises(ConfigError, match="no spatial transformer"):
        show(models.create("cnn", **SMALL), torch.rand(1, 1, 24, 24), tmp_path / "s.png")
    assert not (tmp_path / "s.png").exists()


def test_cli_predict_prints_digit_and_confidence(tmp_path, capsys):
    run = _run_dir(tmp_path)
    image = _png(tmp_path / "digit.png", size=(64, 64))
    shown = tmp_path / "look.png"
    assert cli.main(["predict", str(run), str(image), "--show", str(shown)]) == 0
    out = capsys.readouterr().out
    assert "digit.png\tdigit " in out and "confidence 0." in out
    assert shown.is_file()


def test_cli_predict_several_images_share_one_picture(tmp_path, capsys):
    run = _run_dir(tmp_path)
    images = [str(_png(tmp_path / f"{k}.png")) for k in ("one", "two")]
    assert cli.main(["predict", str(run), *images, "--show", str(tmp_path / "s.png")]) == 0
    out = capsys.readouterr().out
    assert out.count("\tdigit ") == 2 and (tmp_path / "s.png").is_file()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("no-run", "no run directory"),
        ("no-image", "no image file"),
        ("bad-image", "cannot read"),
        ("cnn-show", "--show: model 'cnn' has no spatial transformer"),
    ],
)
def test_cli_predict_errors_are_one_line(tmp_path, fails_with, setup, message):
    run = (
        tmp_path / "missing"
        if setup == "no-run"
        else _run_dir(tmp_path, "cnn" if setup == "cnn-show" else "stn")
    )
    image = tmp_path / "x.png"
    if setup == "bad-image":
        image.write_text("text")
    elif setup in ("no-run", "cnn-show"):
        _png(image)
    fails_with(
        ["predict", str(run), str(image), *(["--show", "s.png"] * (setup == "cnn-show"))], message
    )


def test_load_image_lays_transparency_on_white(tmp_path):
    rgba = np.zeros((30, 30, 4), dtype=np.uint8)  # transparent everywhere ...
    rgba[5:25, 12:18] = (0, 0, 0, 255)  # ... but an opaque black bar
    Image.fromarray(rgba).save(tmp_path / "t.png")
    x = load_image(tmp_path / "t.png", (30, 30))
    assert x[0, 0, 0, 0] == 0 and x[0, 0, 15, 15] == 1  # inverted: light bar on dark
