"""``stnlab train``: train a model on a Cluttered MNIST file or a generated variant."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from stnlab.cli.flags import add_options, given
from stnlab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from stnlab.config.errors import CommandError, DataError

HELP = "train a model (cnn, stn, mstn, ...) and write a run directory"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_options(p, DataConfig)
    add_options(p, ModelConfig)
    add_options(p, TrainConfig)
    p.add_argument("--out", default=None, help="run directory (default runs/MODEL-SIZE-sSEED)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary line")


def _run_config(args: argparse.Namespace) -> RunConfig:
    """The run's config from the flags given; a model that cannot be built fails here,
    before any data is loaded."""
    from stnlab import models
    from stnlab.train.loop import resolve_device

    data = given(args, DataConfig)
    if "path" in data:
        made = [args._flags[f"data.{k}"] for k in data if k != "path"]
        if made:
            raise CommandError(f"--data is a saved data set; leave out {made[0]} (it makes one)")
        if not Path(data["path"]).is_file():
            raise DataError(f"no data file {data['path']!r}")
        data["path"] = str(Path(data["path"]).resolve())
    model, train = ModelConfig(**given(args, ModelConfig)), TrainConfig(**given(args, TrainConfig))
    run = RunConfig(model, train, DataConfig(**data))
    resolve_device(run.train.device)
    models.create(run.model)
    return run


def run(args: argparse.Namespace) -> int:
    from stnlab.data import dataset_of
    from stnlab.runs.run_folder import RunDir
    from stnlab.train.loop import train

    config = _run_config(args)
    m, t = config.model, config.train
    out = Path(args.out or f"runs/{m.name}-{m.size}-s{t.seed}")
    if not args.resume and RunDir(out).holds_run():
        raise CommandError(f"{out} already holds a run; pass --resume or choose another --out")
    main = int(os.environ.get("RANK", "0")) == 0
    res = train(
        config,
        dataset_of(config.data),
        out_dir=out,
        resume=args.resume,
        progress=not args.quiet,
        log=print if main and not args.quiet else None,
    )
    s = res.summary
    if main and not args.quiet:
        print(
            f"{s.model} ({s.size}, {s.parameters:,} parameters), {s.epochs} epochs, "
            f"seed {s.seed}: valid {s.valid_accuracy:.2%}, test {s.test_accuracy:.2%}, "
            f"{s.train_seconds:.1f} s training ({s.train_images_per_second:.0f} images/s) "
            f"-> {out}"
        )
    return 0
