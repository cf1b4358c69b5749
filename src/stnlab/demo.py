"""A live page to try a trained run: draw, upload or pick a digit and see what the transformers do.

:class:`Demo` does the work and needs no web page; :func:`build_app` lays it out as a Gradio
app (the optional extra ``pip install 'stnlab[demo]'``) and :func:`launch` serves it, on
127.0.0.1 unless told otherwise. Gradio is imported only there, so this module imports
without it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor, nn

from stnlab.config import INVERT
from stnlab.config.errors import CommandError, DataError
from stnlab.data import dataset_of, load
from stnlab.diagnostics import find_transformers, measure_model
from stnlab.predict import Picture, picture, prepare
from stnlab.runs.run_folder import RunDir

__all__ = [
    "HOST",
    "INSTALL",
    "Demo",
    "Look",
    "build_app",
    "canvases_of",
    "launch",
    "require_gradio",
]

INSTALL = "pip install 'stnlab[demo]'"
HOST = "127.0.0.1"  # this machine only, unless --host says otherwise
CLUTTER_MAX = 16  # the most clutter patches the page offers
_SHOWN = 192  # pixels: each transformer's output is enlarged to about this size
_FIGURES = (  # the θ figures the page shows, in this order, and their names there
    ("area_ratio", "area ratio (sampled / image)"),
    ("outside_fraction", "outside fraction"),
    ("shift_x_px", "centre shift x (px)"),
    ("shift_y_px", "centre shift y (px, down)"),
    ("scale_x", "scale x"),
    ("scale_y", "scale y"),
    ("rotation_deg", "rotation (degrees)"),
    ("shear", "shear"),
    ("identity_distance_px", "distance from the identity (px)"),
)


@dataclass(frozen=True)
class Look:
    """What the page shows for one picture.

    ``figure`` is the input with each sampling grid (and a thin-plate spline's control
    points) next to each transformer's output, as ``stnlab predict --show`` draws it, an
    (H, W, 3) uint8 image; ``outputs`` each transformer's output alone, enlarged, (H', W')
    uint8, named by ``captions``; ``statistics`` is Markdown: what was done to the picture,
    the prediction, and what each transformer's θ does. ``input`` is what the model was
    given, (C, H, W) in [0, 1].
    """

    input: np.ndarray
    label: int
    probabilities: dict[str, float]
    figure: np.ndarray
    outputs: list[np.ndarray]
    captions: list[str]
    statistics: str


def canvases_of(run_dir: str | Path, data: str | Path | None = None) -> tuple[Tensor, Tensor, str]:
    """The test split of ``data`` (an ``.npz`` file), or of the run's own data: images
    (N, C, H, W), labels (N,) and where they came from. A generated data set is generated
    again from the run's config (as training made it); a published one is fetched if need be.

    Raises:
        DataError: the data cannot be had (a missing file, no network for a published set),
            or its images are not the model's input.
    """
    config = RunDir(run_dir).run_config()
    if data is not None:
        if not Path(data).is_file():
            raise DataError(f"no data file {str(data)!r}")
        x, y = load(data).split("test")
        where = str(data)
    else:
        x, y = dataset_of(config.data).split("test")
        where = "the run's data"
    model = config.model
    size = model.in_size if isinstance(model.in_size, tuple | list) else (model.in_size,) * 2
    expected = (model.in_channels, *size)
    if tuple(x.shape[1:]) != tuple(expected):
        raise DataError(f"{where} has images {tuple(x.shape[1:])}, but the model takes {expected}")
    if len(x) == 0:
        raise DataError(f"the test split of {where} is empty")
    return x, y, where


def _rendered(fig: Figure, dpi: int = 110) -> np.ndarray:
    """A matplotlib figure as an (H, W, 3) uint8 image, cropped to what it draws."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.05)
    return np.asarray(Image.open(buffer).convert("RGB"))


def _enlarged(image: Tensor) -> np.ndarray:
    """One output (C, H, W) as an enlarged grey uint8 image: a picture in [0, 1] as it is,
    feature maps averaged over channels and stretched to their own range."""
    grey = image.float().mean(0)  # (H, W)
    if image.shape[0] > 1 or grey.min() < 0 or grey.max() > 1:
        grey = (grey - grey.min()) / (grey.max() - grey.min()).clamp_min(1e-8)
    k = max(1, _SHOWN // max(grey.shape))
    pixels = (grey.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return np.kron(pixels, np.ones((k, k), np.uint8))  # (k·H, k·W), each pixel a k×k block


class Demo:
    """A trained model and, optionally, test canvases to pick from and to take clutter from.

    Args:
        model: a trained model (:func:`stnlab.models.load`), kept on the CPU in eval mode.
        canvases: test images (N, C, H, W) in [0, 1] of the model's input, or ``None``.
        labels: their classes (N,).
        classes: the class names (default ``0``, ``1``, ...).
    """

    def __init__(
        self,
        model: nn.Module,
        canvases: Tensor | None = None,
        labels: Tensor | None = None,
        classes: list[str] | None = None,
    ):
        self.model = model.cpu().eval()
        self.canvases, self.labels = canvases, labels
        self.classes = classes or [str(k) for k in range(model.config.num_classes)]
        self.size = tuple(model.in_size)
        self.channels = model.config.in_channels

    # ------------------------------------------------------------------ the three sources

    def picture(
        self, image: Image.Image | np.ndarray, invert: str = "auto", clutter: int = 0, seed: int = 0
    ) -> Look:
        """Look at a drawn or uploaded picture of any size (a PIL image or a uint8 array),
        padded to the input's shape (:func:`stnlab.predict.prepare`); ``clutter`` patches
        cut from the test canvases are added, placed by ``seed``."""
        if isinstance(image, np.ndarray):
            image = Image.fromarray(image)
        pic = prepare(image, self.size, self.channels, invert)
        x = self._cluttered(pic.image, clutter, seed)
        return self._look(x, f"your picture: {pic.describe()}", pic, None)

    def canvas(self, index: int, clutter: int = 0, seed: int = 0) -> Look:
        """Look at test canvas ``index``, with ``clutter`` extra patches placed by ``seed``."""
        if self.canvases is None:
            raise DataError("this page has no test canvases (start it with --data FILE.npz)")
        if not 0 <= int(index) < len(self.canvases):
            raise DataError(f"test canvas {index} does not exist: 0 to {len(self.canvases) - 1}")
        index = int(index)
        x = self._cluttered(self.canvases[index : index + 1].float(), clutter, seed)
        label = int(self.labels[index])
        return self._look(x, f"test canvas #{index}, a {self.classes[label]}", None, label)

    # ------------------------------------------------------------------ clutter

    def _cluttered(self, x: Tensor, patches: int, seed: int) -> Tensor:
        """x (1, C, H, W) with ``patches`` square crops of test canvases' strokes added at
        random places and the sum clipped to [0, 1], as the generator adds its clutter."""
        patches = int(patches)
        if patches <= 0:
            return x
        if self.canvases is None:
            raise DataError("clutter is cut from test canvases, and this page has none")
        rng = np.random.default_rng(int(seed))
        h, w = self.size
        side = max(2, round(min(h, w) / 8))  # 5 px on 40×40, as the generator's patches
        layer = torch.zeros_like(x)
        for _ in range(patches):
            source = self.canvases[rng.integers(len(self.canvases))].float()  # (C, H, W)
            ink = torch.nonzero(source.mean(0) > 0.5)  # (I, 2) rows and columns of strokes
            r, c = ink[rng.integers(len(ink))].tolist() if len(ink) else (h // 2, w // 2)
            r, c = min(max(r - side // 2, 0), h - side), min(max(c - side // 2, 0), w - side)
            top, left = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
            layer[0, :, top : top + side, left : left + side] = source[
                :, r : r + side, c : c + side
            ]
        return (x + layer).clamp(0, 1)

    # ------------------------------------------------------------------ what the page shows

    @torch.no_grad()
    def _look(self, x: Tensor, what: str, pic: Picture | None, label: int | None) -> Look:
        """Everything the page shows for one input x (1, C, H, W)."""
        probabilities = torch.softmax(self.model(x), dim=1)[0]  # (K,)
        predicted = int(probabilities.argmax())
        lines = [f"**{what}**", "", f"prediction: **{self.classes[predicted]}**"]
        if label is not None:
            lines[-1] += (
                " (right)" if predicted == label else f" (wrong: it is a {self.classes[label]})"
            )
        outputs, captions = [], []
        transformers = list(getattr(self.model, "transformers", []))
        if transformers:
            fig = picture(
                self.model,
                x,
                [""],
                None if label is None else [label],
                None if pic is None else [pic],
            )
            for k, ((warped, _), st) in enumerate(
                zip(self.model.transform(x), transformers, strict=True)
            ):
                outputs.append(_enlarged(warped[0]))
                size = "×".join(map(str, st.out_size))
                captions.append(f"transformer {k + 1}: {st.transform.name}, {size}")
            lines += ["", *self._statistics(x)]
        else:
            fig = Figure(figsize=(2.4, 2.6), layout="constrained")
            ax = fig.subplots()
            ax.imshow(x[0].float().mean(0).numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set(xticks=[], yticks=[], title=f"input (prediction {self.classes[predicted]})")
            lines += ["", "This model has no spatial transformer: the input goes straight in."]
        return Look(
            input=x[0].float().numpy(),
            label=predicted,
            probabilities={c: float(p) for c, p in zip(self.classes, probabilities, strict=True)},
            figure=_rendered(fig),
            outputs=outputs,
            captions=captions,
            statistics="\n".join(lines),
        )

    def _statistics(self, x: Tensor) -> list[str]:
        """A Markdown table of what each transformer's θ does to input x (1, C, H, W)."""
        measured = measure_model(self.model, x)  # {name: {figure: (1,)}}
        found = find_transformers(self.model)
        names = list(measured)
        head = "| θ | " + " | ".join(f"{n} ({found[n].transform.name})" for n in names) + " |"
        rows = [head, "|---" * (len(names) + 1) + "|"]
        for key, text in _FIGURES:
            if any(key in measured[n] for n in names):
                cells = [
                    f"{float(measured[n][key][0]):.3g}" if key in measured[n] else "–"
                    for n in names
                ]
                rows.append(f"| {text} | " + " | ".join(cells) + " |")
        return rows


# ---------------------------------------------------------------------- the page


def require_gradio() -> Any:
    """The gradio module; a one-line :class:`~stnlab.config.errors.CommandError` naming the
    extra that installs it if it is missing."""
    try:
        import gradio
    except ImportError:
        raise CommandError(f"the live page needs Gradio: {INSTALL}") from None
    return gradio


def build_app(demo: Demo, title: str = "stnlab") -> Any:
    """The page as a ``gradio.Blocks``: three ways in (draw, upload, a test canvas), the
    shared options (invert, clutter), and what :class:`Look` holds.

    Its API (for ``gradio_client``) has one endpoint per way in: ``/draw`` (an image
    editor's value), ``/upload`` (an image) and ``/canvas`` (an index); each takes the
    clutter patches and their seed too and returns the predicted class with its
    probabilities, the figure, the outputs and the statistics.
    """
    gr = require_gradio()

    def shown(look: Look) -> tuple:
        return (
            look.probabilities,
            look.figure,
            list(zip(look.outputs, look.captions, strict=True)),
            look.statistics,
        )

    def checked(fn, *args) -> tuple:
        try:
            return shown(fn(*args))
        except DataError as exc:  # a user's mistake: shown on the page, not a traceback
            raise gr.Error(str(exc)) from None

    def drawn(editor: dict | None, invert: str, clutter: int, seed: int) -> tuple:
        image = None if editor is None else editor.get("composite")
        if image is None:
            raise gr.Error("draw a digit first")
        return checked(demo.picture, image, invert, clutter, seed)

    def uploaded(image, invert: str, clutter: int, seed: int) -> tuple:
        if image is None:
            raise gr.Error("upload a picture first")
        return checked(demo.picture, image, invert, clutter, seed)

    def picked(index: int, clutter: int, seed: int) -> tuple:
        return checked(demo.canvas, index, clutter, seed)

    canvases = demo.canvases is not None
    with gr.Blocks(title=title, analytics_enabled=False) as app:
        gr.Markdown(
            f"# {title}\n"
            "Draw a digit, upload a picture or pick a test canvas: see where each spatial "
            "transformer samples the input, what it makes of it, and what the classifier says."
        )
        with gr.Row():
            with gr.Column(scale=1):
                with gr.Tab("Draw", id="draw"):
                    sketch = gr.Sketchpad(
                        type="pil",
                        image_mode="RGBA",
                        canvas_size=(280, 280),
                        brush=gr.Brush(default_size=14, colors=["#000000"], color_mode="fixed"),
                        label="draw a digit: pick the brush, then draw",
                        elem_id="sketch",
                    )
                    draw_button = gr.Button("Classify the drawing", elem_id="draw-button")
                with gr.Tab("Upload", id="upload"):
                    upload = gr.Image(
                        type="pil",
                        image_mode=None,  # as the file is: a transparent one is laid on white
                        sources=["upload", "clipboard"],
                        label="a picture of any size",
                        elem_id="upload",
                    )
                    upload_button = gr.Button("Classify the picture", elem_id="upload-button")
                with gr.Tab("Test canvas", id="canvas", visible=canvases):
                    index = gr.Slider(
                        0,
                        max(0, len(demo.canvases) - 1) if canvases else 0,
                        value=0,
                        step=1,
                        label="test canvas",
                        elem_id="canvas-index",
                    )
                    canvas_button = gr.Button("Classify the canvas", elem_id="canvas-button")
                invert = gr.Radio(
                    list(INVERT),
                    value=INVERT[0],
                    label="invert (auto: a light border means dark on light)",
                )
                clutter = gr.Slider(
                    0,
                    CLUTTER_MAX,
                    value=0,
                    step=1,
                    label="clutter patches to add (cut from test canvases)",
                    visible=canvases,
                )
                seed = gr.Number(0, precision=0, label="clutter seed", visible=canvases)
            with gr.Column(scale=2):
                gr.Markdown("**The input with each sampling grid, and each transformer's output**")
                figure = gr.Image(
                    type="numpy",
                    format="png",
                    show_label=False,  # a floating label would hide the figure's title
                    interactive=False,
                    height=360,
                    elem_id="figure",
                )
                with gr.Row():
                    label = gr.Label(
                        num_top_classes=len(demo.classes), label="prediction", elem_id="prediction"
                    )
                    statistics = gr.Markdown(elem_id="statistics")
                outputs = gr.Gallery(
                    label="each transformer's output, enlarged",
                    format="png",
                    columns=4,
                    fit_columns=False,  # one output takes a quarter of the width, not all
                    height=240,
                    object_fit="contain",
                    elem_id="outputs",
                )
        shown_in = [label, figure, outputs, statistics]
        one = {"concurrency_id": "model", "concurrency_limit": 1}  # one model, one at a time
        draw_button.click(drawn, [sketch, invert, clutter, seed], shown_in, api_name="draw", **one)
        upload_button.click(
            uploaded, [upload, invert, clutter, seed], shown_in, api_name="upload", **one
        )
        canvas_button.click(picked, [index, clutter, seed], shown_in, api_name="canvas", **one)
    return app


def launch(
    app: Any, host: str = HOST, port: int | None = None, share: bool = False
) -> tuple[str, str | None]:
    """Start serving ``app`` on ``host``:``port`` (``None``: 7860 or the next free port) and
    return at once with its local address and, with ``share``, its public gradio.live link
    (that needs the internet). ``app.block_thread()`` then serves until Ctrl-C;
    ``app.close()`` stops it. The page loads no font or script from the web.
    """
    gr = require_gradio()
    fonts = ["ui-sans-serif", "system-ui", "sans-serif"]
    theme = gr.themes.Default(font=fonts, font_mono=["ui-monospace", "monospace"])
    try:
        _, local, public = app.launch(
            server_name=host,
            server_port=port,
            share=share,
            prevent_thread_lock=True,
            quiet=True,
            theme=theme,
            footer_links=["api"],
        )
    except OSError as exc:  # the port is taken, or the address is not this machine's
        where = f"{host}:{port}" if port is not None else host
        raise CommandError(f"cannot serve on {where}: {str(exc).splitlines()[0]}") from None
    return local, public
