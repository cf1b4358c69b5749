"""``stnlab inspect RUN --data FILE``: what each transformer of a trained run does to the images.

Prints, per transformer, the median and 10–90% spread of :func:`stnlab.diagnostics.measure`'s
figures on a split of a data file (area ratio, out-of-image fraction, centre shift, distance
from the identity and, for matrix families, scale, rotation and shear), then the collapse
conditions it meets, worded as training's warnings. ``--show PATH`` draws what the
transformers do to the first images of the split, as ``stnlab predict --show`` does (a
thin-plate spline's control points and warped grid included).
"""

from __future__ import annotations

import argparse
import json

from stnlab.cli.commands.evaluate import add_batch_size, batch_size
from stnlab.cli.flags import add_options, given
from stnlab.config import REPORT_SAMPLES, SPLITS, TrainConfig
from stnlab.config.errors import CommandError

HELP = "print what each spatial transformer of a trained run does (θ statistics on a data file)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN", help="a directory written by `stnlab train`")
    p.add_argument("--data", required=True, metavar="PATH.npz", help="data file to measure on")
    p.add_argument("--split", default="test", choices=SPLITS, help="which images (default: test)")
    add_batch_size(p)
    add_options(p, TrainConfig, only=["device"])
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.add_argument(
        "--show",
        metavar="PATH.png",
        help="also save a picture of the first --samples images of the split: each input with "
        "the sampling grid's outline (a thin-plate spline's warped grid and control points "
        "too), each transformer's output, and the prediction (green right, red wrong)",
    )
    p.add_argument(
        "--samples",
        type=int,
        default=REPORT_SAMPLES,
        help=f"images in the --show picture (default {REPORT_SAMPLES})",
    )


def _name(figure: str) -> str:
    """A figure's key as a row title: ``shift_x_px`` -> ``shift x (px)``."""
    for suffix, unit in (("_px", " (px)"), ("_deg", " (degrees)")):
        if figure.endswith(suffix):
            figure = figure[: -len(suffix)] + unit
    return figure.replace("_", " ")


def _table(figures: list[str], summary: dict[str, float]) -> list[str]:
    """One line per figure: its quantiles (:data:`stnlab.diagnostics.QUANTILES`)."""
    from stnlab.diagnostics import QUANTILES

    lines = [f"  {'':<28}" + "".join(f"{q:>10}" for q in QUANTILES)]
    for f in figures:
        lines.append(
            f"  {_name(f):<28}" + "".join(f"{summary[f'{f}_{q}']:>10.4g}" for q in QUANTILES)
        )
    return lines


def run(args: argparse.Namespace) -> int:
    from stnlab import models
    from stnlab.cli.commands.evaluate import load_split
    from stnlab.diagnostics import find_transformers, measure_model, summarize
    from stnlab.train import monitor
    from stnlab.train.loop import resolve_device
    from stnlab.train.monitor import collapse

    if args.samples <= 0:
        raise CommandError(f"--samples must be positive, got {args.samples}")
    device = resolve_device(TrainConfig(**given(args, TrainConfig)).device)
    size = batch_size(args, device)
    model = models.load(args.run_dir)
    design = model.config.name
    if not find_transformers(model):
        raise CommandError(f"model {design!r} has no spatial transformer to inspect")
    x, y = load_split(args.data, args.split, model)  # checked against the model's input
    shown = _show(model, x, y, args) if args.show else None
    model = model.to(device)
    measured = measure_model(model, x.to(device), batch_size=size)
    summaries = {name: summarize(figures) for name, figures in measured.items()}
    if args.json:
        picture = {} if shown is None else {"picture": str(shown)}
        print(json.dumps({"split": args.split, "n": len(x), "transformers": summaries, **picture}))
        return 0
    print(f"{args.run_dir}: {design}, θ on {len(x)} {args.split} images of {args.data}")
    transformers = find_transformers(model)
    for name, figures in measured.items():
        st = transformers[name]
        size = "x".join(map(str, st.in_size)) + " -> " + "x".join(map(str, st.out_size))
        print(f"\n{monitor.label(design, name)} ({st.transform.name}, {size})")
        print("\n".join(_table(list(figures), summaries[name])))
        found = collapse(summaries[name], monitor.label(design, name))
        print("\n".join(f"  warning: {text}" for text in found.values()) or "  no sign of collapse")
    if shown is not None:
        n = min(args.samples, len(x))
        print(f"\nwhat the transformers did to the first {n} {args.split} images: {shown}")
    return 0


def _show(model, x, y, args: argparse.Namespace):
    """Save the --show picture of the split's first --samples images (on the CPU)."""
    from stnlab.predict import show

    n = min(args.samples, len(x))
    names = [f"{args.split} #{i}, label {int(y[i])}" for i in range(n)]
    return show(model, x[:n], args.show, names, labels=[int(k) for k in y[:n]])
