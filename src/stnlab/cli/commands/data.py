"""``stnlab data``: make, fetch, inspect and picture Cluttered MNIST ``.npz`` files."""

from __future__ import annotations

import argparse
from pathlib import Path

from stnlab.cli.flags import add_options, given
from stnlab.config import PLACEMENTS, SPLITS, DataConfig
from stnlab.config.errors import CommandError, DataError

HELP = "make, fetch, inspect and show Cluttered MNIST data sets"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Attach the ``make``, ``fetch``, ``info`` and ``show`` subcommands."""
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    make = sub.add_parser("make", help="generate a data set and save it as .npz")
    add_options(make, DataConfig, skip=["path"], flags={"seed": "seed"})
    make.add_argument("--out", required=True, type=Path, help="output .npz path")
    make.add_argument("--placement", choices=PLACEMENTS)
    make.add_argument("--patches", type=int, help="number of clutter patches")
    make.add_argument("--patch-size", type=int, help="side of a clutter patch in pixels")
    make.set_defaults(_action=_make)

    fetch = sub.add_parser(
        "fetch", help="download a published data set (checked by SHA-256, cached) or list them"
    )
    fetch.add_argument("name", nargs="?", help="the set to fetch; omit it to list the known sets")
    fetch.add_argument("--list", action="store_true", help="list the known sets and exit")
    fetch.add_argument(
        "--cache-dir",
        type=Path,
        help="where fetched files are kept (default: $STNLAB_CACHE/published, "
        "else ~/.cache/stnlab/published)",
    )
    fetch.set_defaults(_action=_fetch)

    info = sub.add_parser("info", help="print splits, shapes and class counts of a .npz")
    info.add_argument("path", type=Path)
    info.set_defaults(_action=_info)

    show = sub.add_parser("show", help="save a labelled grid of samples as an image")
    show.add_argument("path", type=Path)
    show.add_argument("--out", required=True, type=Path, help="output image (.png)")
    show.add_argument("--split", default="train", choices=SPLITS)
    show.add_argument("--rows", type=int, default=4)
    show.add_argument("--cols", type=int, default=8)
    show.add_argument("--seed", type=int, default=0, help="which samples to pick")
    show.set_defaults(_action=_show)


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen action."""
    return args._action(args)


def _make(args: argparse.Namespace) -> int:
    """``stnlab data make``."""
    from stnlab.data import dataset_of, save

    config = DataConfig(**given(args, DataConfig))
    names = {"placement": args.placement, "patches": args.patches, "patch_size": args.patch_size}
    ds = dataset_of(config, **{key: value for key, value in names.items() if value is not None})
    save(ds, args.out)
    print(f"wrote {args.out}: variant {config.variant}, {_describe(ds)}, seed {config.seed}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    """``stnlab data fetch``: download (or find in the cache), check and load a published set."""
    from stnlab.data import PUBLISHED, load
    from stnlab.data.published import fetch_published, is_fetched, published_path

    if args.list or args.name is None:
        for name, entry in PUBLISHED.items():
            where = published_path(name, args.cache_dir)
            state = f"cached at {where}" if is_fetched(name, args.cache_dir) else "not fetched"
            print(f"{name}: {entry.description}; {entry.size / 1e6:.1f} MB, {state}")
        return 0
    path = fetch_published(args.name, args.cache_dir)
    print(f"{args.name}: {path}, {_describe(load(path))}")
    return 0


def _describe(ds) -> str:
    """``40x40 images, train/valid/test 10000/1000/1000``."""
    from stnlab.data import SPLITS

    h, w = ds.image_size
    counts = "/".join(str(len(ds.split(name)[1])) for name in SPLITS)
    return f"{h}x{w} images, {'/'.join(SPLITS)} {counts}"


def _info(args: argparse.Namespace) -> int:
    """``stnlab data info``."""
    import torch

    from stnlab.data import SPLITS, load

    ds = load(args.path)
    h, w = ds.image_size
    print(f"{args.path}: images {h}x{w}")
    for name in SPLITS:
        x, y = ds.split(name)
        counts = torch.bincount(y, minlength=10).tolist()
        mean = x.mean().item() if len(x) else float("nan")
        print(f"  {name:<5} n={len(x):<6} x {tuple(x.shape)} mean {mean:.3f}  classes {counts}")
    return 0


def _show(args: argparse.Namespace) -> int:
    """``stnlab data show``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from stnlab.data import load

    if args.rows < 1 or args.cols < 1:
        raise CommandError("--rows and --cols must be at least 1")
    x, y = load(args.path).split(args.split)
    if len(x) == 0:
        raise DataError(f"{args.path}: split {args.split!r} is empty")
    count = min(args.rows * args.cols, len(x))
    pick = np.random.default_rng(args.seed).choice(len(x), size=count, replace=False)
    fig, axes = plt.subplots(args.rows, args.cols, figsize=(1.3 * args.cols, 1.45 * args.rows))
    axes = np.atleast_1d(axes).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, i in zip(axes, pick, strict=False):  # fewer samples than cells leaves cells blank
        ax.imshow(x[i, 0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(str(int(y[i])), fontsize=10)
    fig.suptitle(f"{args.path.name} ({args.split})", fontsize=10)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    plt.close(fig)
    print(f"wrote {args.out}: {count} {args.split} samples")
    return 0
