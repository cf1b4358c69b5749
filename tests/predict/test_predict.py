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
from stnlab.predict import load_image, picture, predict, prepare, show


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


# ------------------------------------------------------------------ pictures of any shape


def _off_centre(path=None, background=0, ink=255, size=(100, 80), box=(70, 20, 80, 30)):
    """A made-up picture ``size`` (width, height) with a 10×10 square of ``ink`` at ``box``
    (x0, y0, x1, y1) on ``background``, off-centre: right of the middle and up."""
    pixels = np.full(size[::-1], background, dtype=np.uint8)  # (H, W)
    x0, y0, x1, y1 = box
    pixels[y0:y1, x0:x1] = ink
    image = Image.fromarray(pixels)
    if path is not None:
        image.save(path)
        return path
    return image


def _ink_box(x: torch.Tensor, level: float = 0.5) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), end exclusive, of the pixels of image x (1, 1, H, W) above level."""
    rows, cols = np.nonzero(x[0, 0].numpy() > level)
    return cols.min(), rows.min(), cols.max() + 1, rows.max() + 1


def test_a_wide_picture_is_padded_to_a_square_not_squeezed(tmp_path):
    pic = prepare(_off_centre(tmp_path / "wide.png"), (40, 40))
    assert pic.describe() == "100×80 picture padded to 100×100, then resized to 40×40"
    assert pic.original == (100, 80) and pic.padded == (100, 100) and not pic.inverted
    # 10 rows of background above and below, then ×0.4: the square covers x 70..80 → 28..32
    # and y (20..30) + 10 → 12..16 of the input, and stays a square.
    assert _ink_box(pic.image) == (28, 12, 32, 16)
    assert pic.frame == pytest.approx((-0.5, 3.5, 39.5, 35.5))  # 10 / 100 of 40 = 4 rows
    assert pic.image[0, 0, :3].max() == 0 and pic.image[0, 0, 37:].max() == 0  # the padding
    squeezed = np.asarray(_off_centre().resize((40, 40), Image.Resampling.BILINEAR)) > 127
    rows, cols = np.nonzero(squeezed)
    assert rows.max() + 1 - rows.min() == 5 and cols.max() + 1 - cols.min() == 4  # was 4×5


def test_padding_takes_the_background_of_the_picture():
    grey = prepare(_off_centre(background=51), (40, 40))  # 0.2 grey around the square
    torch.testing.assert_close(grey.image[0, 0, :3], torch.full((3, 40), 0.2), rtol=0, atol=1e-6)
    paper = prepare(_off_centre(background=255, ink=0), (40, 40))  # dark ink on white paper
    assert paper.inverted and paper.describe() == (
        "100×80 picture inverted to light on dark, padded to 100×100, then resized to 40×40"
    )
    assert paper.image[0, 0, :3].max() == 0 and _ink_box(paper.image) == (28, 12, 32, 16)


def test_a_tall_picture_is_padded_at_the_sides_and_any_input_shape_is_kept():
    tall = prepare(_off_centre(size=(80, 100), box=(10, 60, 20, 70)), (40, 40))
    assert tall.padded == (100, 100) and tall.frame == pytest.approx((3.5, -0.5, 35.5, 39.5))
    assert _ink_box(tall.image) == (8, 24, 12, 28)  # x (10..20) + 10 columns, ×0.4
    wide_input = prepare(_off_centre(size=(60, 60), box=(0, 0, 10, 10)), (24, 48))
    assert wide_input.describe() == "60×60 picture padded to 120×60, then resized to 48×24"
    assert _ink_box(wide_input.image) == (12, 0, 16, 4)  # 30 columns of padding on the left
    same = prepare(_off_centre(size=(40, 40), box=(5, 5, 15, 15)), (40, 40))
    assert same.describe() == "40×40 picture used as it is"
    assert same.frame == (-0.5, -0.5, 39.5, 39.5)


def test_show_outlines_where_the_picture_lies_and_says_what_was_done(tmp_path):
    model = models.create("stn", **SMALL)
    pic = prepare(_off_centre(), model.in_size)
    fig = picture(model, pic.image, ["wide.png"], pictures=[pic])
    (frame,) = [line for line in fig.axes[0].lines if line.get_gid() == "picture-frame"]
    x, y = frame.get_data()
    assert (min(x), min(y), max(x), max(y)) == pytest.approx(pic.frame)
    assert pic.frame == pytest.approx((-0.5, 24 * 0.1 - 0.5, 23.5, 24 * 0.9 - 0.5))
    assert fig.axes[0].get_xlabel() == "100×80 → 100×100 → 24×24"
    plain = picture(model, pic.image, ["wide.png"])  # without pictures: no frame, no note
    assert not [line for line in plain.axes[0].lines if line.get_gid() == "picture-frame"]


def test_cli_predict_says_what_was_done_to_each_picture(tmp_path, capsys):
    run = _run_dir(tmp_path)
    wide = _off_centre(tmp_path / "wide.png")
    square = _png(tmp_path / "square.png", size=(24, 24))
    assert (
        cli.main(["predict", str(run), str(wide), str(square), "--show", str(tmp_path / "s.png")])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{wide}\tdigit ")
    assert lines[0].endswith("\t100×80 picture padded to 100×100, then resized to 24×24")
    assert lines[1].endswith("\t24×24 picture used as it is")
