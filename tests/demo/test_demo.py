"""Tests of the live page: what :class:`stnlab.demo.Demo` shows for a picture, a test canvas
and clutter; ``stnlab demo`` served on 127.0.0.1 and called through its HTTP API with
gradio_client; and the page itself in a headless Chromium of the system's.

The browser test saves a screenshot of the page after a prediction in its tmp_path and,
when ``STNLAB_DEMO_SHOT`` names a PNG path, there too (and one after a drawing beside it).
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import fixed_theta, saved_run
from PIL import Image, ImageDraw

from stnlab import cli, models
from stnlab.config.errors import CommandError, DataError
from stnlab.data import load
from stnlab.demo import INSTALL, Demo, canvases_of, require_gradio
from stnlab.predict import prepare

STARTUP = 240  # seconds the page may take to come up on a busy machine (a bound, not a check)
BROWSER_WAIT = 120  # seconds a page element may take to appear
CHROMIUM = "apt-get install -y chromium chromium-driver"  # Debian's; other systems name theirs
REST = [(x, y) for y in np.linspace(-1, 1, 4) for x in np.linspace(-1, 1, 4)]  # TPS at rest


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_file) -> Path:
    """A small TPS stn trained for 1 epoch on the 400 training canvases of ``data_file``
    (25 steps of 16: about 3 digits in 10 right, not 1)."""
    out = tmp_path_factory.mktemp("demo") / "tps"
    argv = ["train", "--data", str(data_file), "--epochs", "1", "--out", str(out)]
    fast = ["--model", "stn", "--transform", "tps", "--size", "small", "--batch-size", "16"]
    assert cli.main([*argv, *fast, "--threads", "1", "--quiet"]) == 0
    return out


def _wide_picture(path: Path | None = None):
    """A made-up 100×80 picture: a light 4 drawn right of the centre and up, on black."""
    image = Image.new("L", (100, 80), 0)
    ImageDraw.Draw(image).line([(70, 8), (62, 30), (82, 30), (76, 16), (76, 44)], 255, 4)
    if path is None:
        return image
    image.save(path)
    return path


@torch.no_grad()
def _expected(model, x: torch.Tensor) -> tuple[int, list[float]]:
    """The class and probabilities of image x (1, C, H, W), computed here."""
    probs = torch.softmax(model.eval()(x), dim=1)[0]
    return int(probs.argmax()), probs.tolist()


# ------------------------------------------------------------------ the page's work, no page


def test_a_test_canvas_shows_prediction_outputs_and_theta(trained, data_file):
    model = models.load(trained)
    x, y = load(data_file).split("test")
    look = Demo(model, x, y).canvas(3)
    label, probs = _expected(model, x[3:4])
    assert look.label == label
    assert list(look.probabilities) == [str(k) for k in range(10)]
    np.testing.assert_allclose(list(look.probabilities.values()), probs, atol=1e-6)
    np.testing.assert_array_equal(look.input, x[3].numpy())
    assert look.captions == ["transformer 1: tps, 40×40"]
    (output,) = look.outputs  # the transformer's output, each pixel a 4×4 block
    warped = model.transform(x[3:4])[0][0][0, 0].detach()
    np.testing.assert_allclose(output[::4, ::4], (warped.clamp(0, 1) * 255).round(), atol=1)
    assert look.figure.ndim == 3 and look.figure.shape[2] == 3 and look.figure.dtype == np.uint8
    assert look.statistics.startswith(f"**test canvas #3, a {int(y[3])}**")
    assert f"prediction: **{label}**" in look.statistics


def test_the_theta_statistics_are_the_transformers():
    zoom = fixed_theta(models.create("stn", transform="tps"), (0.5 * np.array(REST)).ravel())
    look = Demo(zoom).picture(Image.new("L", (40, 40)))
    assert "| θ | transformers.0 (tps) |" in look.statistics
    assert "| area ratio (sampled / image) | 0.25 |" in look.statistics  # a 2× zoom
    assert "| centre shift x (px) | 0 |" in look.statistics
    assert "rotation" not in look.statistics  # a TPS has none
    turned = fixed_theta(models.create("stn"), [0.0, -1.0, 0.0, 1.0, 0.0, 0.0])  # 90°
    assert (
        "| rotation (degrees) | 90 |" in Demo(turned).picture(Image.new("L", (40, 40))).statistics
    )


def test_a_picture_of_any_shape_is_padded_as_predict_does(trained):
    model = models.load(trained)
    look = Demo(model).picture(_wide_picture())
    pic = prepare(_wide_picture(), (40, 40))
    np.testing.assert_array_equal(look.input, pic.image[0].numpy())
    assert look.label == _expected(model, pic.image)[0]
    assert "your picture: 100×80 picture padded to 100×100, then resized to 40×40" in (
        look.statistics
    )


def test_clutter_is_cut_from_the_test_canvases(trained, data_file):
    x, y = load(data_file).split("test")
    demo = Demo(models.load(trained), x, y)
    plain, cluttered = demo.canvas(5).input, demo.canvas(5, clutter=6, seed=1).input
    assert (cluttered >= plain).all() and cluttered.max() <= 1  # added, then clipped
    changed = (cluttered > plain).sum()
    assert 0 < changed <= 6 * 5 * 5  # at most six 5×5 patches
    assert np.array_equal(demo.canvas(5, clutter=6, seed=1).input, cluttered)  # the seed decides
    assert not np.array_equal(demo.canvas(5, clutter=6, seed=2).input, cluttered)
    drawn = demo.picture(_wide_picture(), clutter=3, seed=0).input
    assert (drawn >= prepare(_wide_picture(), (40, 40)).image[0].numpy()).all()


def test_a_model_without_transformer_shows_its_input_only():
    look = Demo(models.create("cnn")).picture(_wide_picture())
    assert look.outputs == [] and look.captions == []
    assert "no spatial transformer" in look.statistics and look.figure.ndim == 3


def test_the_page_refuses_what_it_cannot_show(trained, data_file):
    x, y = load(data_file).split("test")
    demo, bare = Demo(models.load(trained), x, y), Demo(models.load(trained))
    with pytest.raises(DataError, match="test canvas 100 does not exist: 0 to 99"):
        demo.canvas(100)
    with pytest.raises(DataError, match="no test canvases"):
        bare.canvas(0)
    with pytest.raises(DataError, match="clutter is cut from test canvases"):
        bare.picture(_wide_picture(), clutter=2)


def test_test_canvases_come_from_the_run_or_a_data_file(trained, data_file, tmp_path):
    x, y, where = canvases_of(trained)  # the run was trained on data_file
    expected = load(data_file).split("test")
    assert where == "the run's data" and torch.equal(x, expected[0]) and torch.equal(y, expected[1])
    assert canvases_of(trained, data_file)[2] == str(data_file)
    small = saved_run(tmp_path / "small", models.create("stn", size="small", in_size=24))
    with pytest.raises(DataError, match=r"has images \(1, 40, 40\), but the model takes"):
        canvases_of(small, data_file)
    with pytest.raises(DataError, match="no data file"):
        canvases_of(trained, tmp_path / "none.npz")


# ------------------------------------------------------------------ without Gradio


def test_without_gradio_the_command_names_the_extra(monkeypatch, trained, fails_with):
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` fails, as uninstalled
    with pytest.raises(CommandError, match=r"needs Gradio: pip install 'stnlab\[demo\]'"):
        require_gradio()
    line = fails_with(["demo", str(trained)], INSTALL)
    assert line.startswith("stnlab demo: error: ")


def test_help_imports_neither_torch_nor_gradio():
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('torch' in sys.modules, 'gradio' in sys.modules))\n"
        "from stnlab.cli import main\n"
        "for argv in (['--help'], ['demo', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--share" in out.stdout and "--host" in out.stdout
    assert out.stdout.splitlines()[-1] == "False False"


# ------------------------------------------------------------------ the page, served


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(trained, data_file, tmp_path_factory):
    """``stnlab demo`` on a free loopback port; yields (URL, the lines it printed). Stopped
    by SIGTERM at the end, which must end it cleanly (exit status 0)."""
    pytest.importorskip("gradio")
    folder = tmp_path_factory.mktemp("served")
    env = {
        **os.environ,
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "GRADIO_TEMP_DIR": str(folder / "gradio"),
    }
    argv = ["demo", str(trained), "--data", str(data_file), "--port", str(_free_port())]
    with open(folder / "stderr.txt", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stnlab", *argv],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
        )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    printed = []
    try:
        while not any(" on http://" in line for line in printed):
            try:
                printed.append(lines.get(timeout=STARTUP).rstrip("\n"))
            except queue.Empty:
                pytest.fail(
                    f"stnlab demo printed no address: {(folder / 'stderr.txt').read_text()}"
                )
        while not printed[-1].startswith("Ctrl-C"):
            printed.append(lines.get(timeout=STARTUP).rstrip("\n"))
        (address,) = [line.rsplit(" on ", 1)[1] for line in printed if " on http://" in line]
        yield address, printed
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            status = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert status == 0, (folder / "stderr.txt").read_text()


def test_the_command_serves_this_machine_only_and_says_how_to_share(served):
    address, printed = served
    assert address.startswith("http://127.0.0.1:")
    assert printed[0] == "test canvases: 100 from " + printed[0].split(" from ", 1)[1]
    assert any("--host 0.0.0.0" in line and "--share" in line for line in printed)


def test_a_request_through_the_http_api_returns_the_class_and_the_images(
    served, trained, data_file, tmp_path
):
    gradio_client = pytest.importorskip("gradio_client")
    client = gradio_client.Client(served[0], verbose=False)
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(endpoints) == {"/draw", "/upload", "/canvas"}
    model = models.load(trained)
    x, y = load(data_file).split("test")

    label, figure, gallery, statistics = client.predict(3, 0, 0, api_name="/canvas")
    expected, probs = _expected(model, x[3:4])
    assert label["label"] == str(expected)
    got = {c["label"]: c["confidence"] for c in label["confidences"]}
    np.testing.assert_allclose([got[str(k)] for k in range(10)], probs, atol=1e-5)
    assert min(Image.open(figure).size) > 200  # the input with its grid, and the output
    (output,) = gallery
    assert output["caption"] == "transformer 1: tps, 40×40"
    shown = np.asarray(Image.open(output["image"]).convert("L"), dtype=float)
    warped = model.transform(x[3:4])[0][0][0, 0].detach()
    np.testing.assert_allclose(shown[::4, ::4], (warped.clamp(0, 1) * 255).round(), atol=1)
    assert f"test canvas #3, a {int(y[3])}" in statistics

    wide = _wide_picture(tmp_path / "wide.png")
    upload = client.predict(gradio_client.handle_file(str(wide)), "auto", 0, 0, api_name="/upload")
    assert upload[0]["label"] == str(_expected(model, prepare(wide, (40, 40)).image)[0])
    assert "100×80 picture padded to 100×100, then resized to 40×40" in upload[3]

    drawing = Image.new("RGBA", (280, 280), (0, 0, 0, 0))  # as the sketchpad sends it:
    ImageDraw.Draw(drawing).line([(120, 60), (140, 220)], (0, 0, 0, 255), 14)  # dark strokes
    drawing.save(tmp_path / "drawn.png")
    editor = {
        "background": None,
        "layers": [],
        "composite": gradio_client.handle_file(str(tmp_path / "drawn.png")),
    }
    drawn = client.predict(editor, "auto", 0, 0, api_name="/draw")
    expected = _expected(model, prepare(tmp_path / "drawn.png", (40, 40)).image)[0]
    assert drawn[0]["label"] == str(expected)
    assert "280×280 picture inverted to light on dark, then resized to 40×40" in drawn[3]


# ------------------------------------------------------------------ the page, in a browser


def _chrome(size=(1400, 1700)):
    """A headless Chromium of the system's that reaches nothing but 127.0.0.1."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver):
        pytest.skip(f"no Chromium and chromedriver here; on Debian or Ubuntu: {CHROMIUM}")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={size[0]},{size[1]}",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",  # loopback only
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def _screenshot(browser, tmp_path: Path, suffix: str = "") -> None:
    """Save what the browser shows in tmp_path and, if asked, at $STNLAB_DEMO_SHOT."""
    shot = tmp_path / f"demo-shot{suffix}.png"
    assert browser.save_screenshot(str(shot))
    if target := os.environ.get("STNLAB_DEMO_SHOT"):
        target = Path(target)
        shutil.copyfile(shot, target.with_name(target.stem + suffix + target.suffix))


def test_the_page_in_a_headless_browser(served, trained, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    model = models.load(trained)
    browser = _chrome()
    wait = WebDriverWait(browser, BROWSER_WAIT)

    def statistics_say(text: str):
        return wait.until(lambda b: text in b.find_element(By.ID, "statistics").text)

    def predicted() -> str:  # the Label's heading: the predicted class
        return browser.find_element(By.ID, "prediction").text.splitlines()[1]

    try:
        browser.get(served[0])
        # Draw: pick the brush, draw a stroke on the canvas, classify.
        brush = wait.until(lambda b: b.find_element(By.CSS_SELECTOR, "#sketch [aria-label=Brush]"))
        brush.click()
        canvas = browser.find_elements(By.CSS_SELECTOR, "#sketch canvas")[-1]
        stroke = ActionChains(browser).move_to_element_with_offset(canvas, -20, -60)
        stroke.click_and_hold()
        for dx, dy in [(10, -8), (15, -4), (15, 4), (10, 15), (-10, 20), (-25, 25), (20, 10)]:
            stroke.move_by_offset(dx, dy).pause(0.05)
        stroke.release().perform()
        browser.find_element(By.ID, "draw-button").click()
        statistics_say("your picture: 280×280 picture inverted to light on dark")
        assert predicted() in [str(k) for k in range(10)]
        _screenshot(browser, tmp_path, "-draw")

        # Upload the off-centre 100×80 picture: padded, and the same class as here.
        (tab,) = [
            t for t in browser.find_elements(By.CSS_SELECTOR, "[role=tab]") if t.text == "Upload"
        ]
        tab.click()
        picker = wait.until(lambda b: b.find_element(By.CSS_SELECTOR, "#upload input[type=file]"))
        picker.send_keys(str(_wide_picture(tmp_path / "wide.png")))
        wait.until(lambda b: b.find_element(By.CSS_SELECTOR, "#upload img"))
        browser.find_element(By.ID, "upload-button").click()
        statistics_say("100×80 picture padded to 100×100, then resized to 40×40")
        expected = _expected(model, prepare(tmp_path / "wide.png", (40, 40)).image)[0]
        assert predicted() == str(expected)
        figure = browser.find_element(By.CSS_SELECTOR, "#figure img")
        assert figure.size["width"] > 200  # the input with its grid, and the output
        _screenshot(browser, tmp_path)
    finally:
        browser.quit()
