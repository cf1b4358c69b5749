"""What a model's transformers do to images: each stage's output, its grid's outline and,
for a thin-plate spline, its control points and warped grid.

Shared by :mod:`stnlab.report.html` (the sampled-STN figure) and :mod:`stnlab.predict`
(``--show``); the drawing itself is :func:`stnlab.report.figures.sampled`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from stnlab.diagnostics import measure, outline, to_pixel_points
from stnlab.report import figures
from stnlab.transforms import ThinPlateSpline

__all__ = ["captions", "control_points", "lattices", "outlines", "sample_design"]

_BORDER = 48  # points per side of a grid outline, and per line of a drawn TPS grid


def _through(field: torch.Tensor | None, points: torch.Tensor) -> torch.Tensor:
    """Normalised points (N, ..., 2) of a stage's input carried to the image through the
    previous stage's image-space grid ``field`` (N, K, K, 2); unchanged without one."""
    if field is None:
        return points
    flat = points.reshape(len(points), -1, 1, 2)  # (N, P, 1, 2)
    out = F.grid_sample(
        field.permute(0, 3, 1, 2), flat, align_corners=False, padding_mode="border"
    )  # (N, 2, P, 1)
    return out[..., 0].transpose(1, 2).reshape(points.shape)


def _stages(
    model: torch.nn.Module, thetas: Sequence[torch.Tensor], image_size
) -> Iterator[tuple[torch.nn.Module, torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]]:
    """Per transformer: (transformer, θ as float32, to_image), where ``to_image`` carries
    normalised points (N, ..., 2) of the transformer's input to normalised image points.

    A transformer whose input is the image (same channels and size) needs nothing; one
    that warps feature maps (MSTN's second) is mapped back through the previous warp,
    since a 'same'-padded conv block keeps normalised coordinates in place.
    """
    c = model.config.in_channels
    previous = None  # the last stage's fine grid in image coordinates (N, K, K, 2)
    for st, theta in zip(model.transformers, thetas, strict=True):
        theta = theta.float()
        on_image = st.in_channels == c and tuple(st.in_size) == tuple(image_size)
        field = None if on_image else previous

        def to_image(points: torch.Tensor, field=field) -> torch.Tensor:
            return _through(field, points)

        yield st, theta, to_image
        previous = to_image(st.transform.grid(theta, (_BORDER, _BORDER)))  # (N, K, K, 2)


@torch.no_grad()
def outlines(model: torch.nn.Module, thetas: Sequence[torch.Tensor], image_size) -> list:
    """Each transformer's output border in input-image pixels, (N, M, 2) arrays of (x, y).

    A transformer that warps feature maps (MSTN's second) is drawn through the previous
    warp (see :func:`_stages`).
    """
    found = []
    for st, theta, to_image in _stages(model, thetas, image_size):
        fine = to_image(st.transform.grid(theta, (_BORDER, _BORDER)))  # (N, K, K, 2)
        found.append(to_pixel_points(outline(fine), image_size).cpu().numpy())  # (N, M, 2)
    return found


def _lines(tps: ThinPlateSpline, out_size) -> torch.Tensor:
    """The TPS lattice in target space: a line along x through each row of control points,
    then one along y through each column, from edge to edge of the output, (L, P, 2)."""
    ticks = tps.controls[: tps.grid_size, 0].float()  # (k,) the control points' x (and y)
    h, w = out_size
    along_x = torch.linspace(-1 + 1 / w, 1 - 1 / w, _BORDER)  # the outermost pixel centres
    along_y = torch.linspace(-1 + 1 / h, 1 - 1 / h, _BORDER)
    rows = [torch.stack([along_x, torch.full_like(along_x, t)], -1) for t in ticks]
    cols = [torch.stack([torch.full_like(along_y, t), along_y], -1) for t in ticks]
    return torch.stack(rows + cols)  # (2k, P, 2)


@torch.no_grad()
def lattices(model: torch.nn.Module, thetas: Sequence[torch.Tensor], image_size) -> list:
    """Per transformer, its warped sampling grid in input-image pixels for a thin-plate
    spline, (N, L, P, 2): L lines of P points (x, y), each the image of a line of the output
    through a row or column of control points, so they cross at the control points'
    sources. ``None`` for the other families, whose outline already shows their warp.
    """
    found = []
    for st, theta, to_image in _stages(model, thetas, image_size):
        if not isinstance(st.transform, ThinPlateSpline):
            found.append(None)
            continue
        lines = _lines(st.transform, st.out_size)  # (L, P, 2) target points
        mapped = st.transform.map_points(theta, lines.reshape(-1, 2))  # (N, L·P, 2)
        mapped = to_image(mapped.reshape(len(theta), *lines.shape))  # (N, L, P, 2)
        found.append(to_pixel_points(mapped, image_size).cpu().numpy())
    return found


@torch.no_grad()
def control_points(
    model: torch.nn.Module, thetas: Sequence[torch.Tensor], image_size
) -> list[figures.ControlPoints | None]:
    """Per transformer, a thin-plate spline's control points: their targets in the
    transformer's output pixels (where they rest) and their sources in input-image pixels
    (where θ sends them: θ holds them, interleaved); ``None`` for the other families."""
    found = []
    for st, theta, to_image in _stages(model, thetas, image_size):
        if not isinstance(st.transform, ThinPlateSpline):
            found.append(None)
            continue
        sources = to_image(theta.reshape(len(theta), -1, 2))  # (N, K, 2), normalised
        target = to_pixel_points(st.transform.controls.float(), st.out_size)  # (K, 2)
        found.append(
            figures.ControlPoints(
                source=to_pixel_points(sources, image_size).cpu().numpy(),
                target=target.numpy(),
            )
        )
    return found


def captions(model: torch.nn.Module, thetas: Sequence[torch.Tensor]) -> list[list[str]]:
    """Per transformer, per image: ``area 0.49, rotation +3°`` (the sampled area relative to
    the transformer's input, and the rotation where the family has one)."""
    found = []
    for st, theta in zip(model.transformers, thetas, strict=True):
        m = measure(theta.float(), st.in_size, st.out_size, st.transform)
        area = m["area_ratio"].tolist()
        rotation = m["rotation_deg"].tolist() if "rotation_deg" in m else None
        found.append(
            [
                f"area {a:.2f}" + ("" if rotation is None else f", rotation {rotation[i]:+.0f}°")
                for i, a in enumerate(area)
            ]
        )
    return found


@torch.no_grad()
def sample_design(
    name: str, model: torch.nn.Module, x: torch.Tensor, with_captions: bool = False
) -> figures.Sampled | None:
    """Each transformer's output, grid outline and the prediction for images x (N, C, H, W);
    with ``with_captions``, each output's :func:`captions` too.

    ``None`` for a model without transformers (``cnn``).
    """
    model.eval()
    if not len(getattr(model, "transformers", [])):
        return None
    stages = model.transform(x)
    outputs = [warped.float().mean(1).numpy() for warped, _ in stages]  # (N, H', W') each
    titles = [
        ("output" if len(stages) == 1 else f"stage {k + 1}")
        + ("" if warped.shape[1] == 1 else f"\n(mean of {warped.shape[1]} maps)")
        for k, (warped, _) in enumerate(stages)
    ]
    thetas = [theta for _, theta in stages]
    size = tuple(x.shape[2:])
    lines = outlines(model, thetas, size)
    predictions = model(x).argmax(1).numpy()
    texts = captions(model, thetas) if with_captions else []
    return figures.Sampled(
        name,
        outputs,
        lines,
        predictions,
        titles,
        texts,
        lattices=lattices(model, thetas, size),
        controls=control_points(model, thetas, size),
    )
