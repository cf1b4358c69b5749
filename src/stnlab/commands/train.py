"""``stnlab train``: train a model on a Cluttered MNIST file or a generated variant."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from stnlab.cli import CommandError

HELP = "train a model (cnn, stn, mstn, ...) and write a run directory"


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", metavar="PATH.npz", help="a data file written by `stnlab data`")
    src.add_argument("--variant", help="generate this variant instead (default 40x40)")
    p.add_argument("--source", default="embedded", help="digits for --variant (embedded|mnist)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of a generated data set")
    p.add_argument("--model", default="stn", help="model name (default stn)")
    p.add_argument("--size", default="default", help="model size preset (default, tf-example...)")
    p.add_argument("--transform", default=None, help="transform family of the STNs (affine...)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=200)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--loc-lr", type=float, default=None, help="LR of the localization nets")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--schedule", default="constant", help="constant, cosine or step")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=0, metavar="N",
                   help="evaluate valid/test every N epochs (the last epoch always)")  # fmt: skip
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                   help="mixed precision on CUDA")  # fmt: skip
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                   help="torch.compile the model (pays off for long runs)")  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="CPU threads of this process")
    p.add_argument("--out", default=None, help="run directory (default runs/MODEL-SIZE-sSEED)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary line")


def _config(args: argparse.Namespace):
    from stnlab.training import TrainConfig, resolve_device

    kwargs = {"size": args.size}
    if args.transform is not None:
        kwargs["transform"] = args.transform
    if args.eval_every < 0:
        raise CommandError(f"--eval-every must be 0 or positive, got {args.eval_every}")
    evals = range(args.eval_every, args.epochs + 1, args.eval_every) if args.eval_every else ()
    try:
        device = resolve_device(args.device)
        cfg = TrainConfig(
            model=args.model, model_kwargs=kwargs, epochs=args.epochs, batch_size=args.batch_size,
            lr=args.lr, loc_lr=args.loc_lr, weight_decay=args.weight_decay, schedule=args.schedule,
            seed=args.seed, eval_epochs=tuple(evals), device=device, amp=args.amp,
            compile=args.compile, threads=args.threads,
        )  # fmt: skip
        from stnlab import models

        models.create(args.model, **kwargs)  # bad size/transform fail now, not after loading data
    except (ValueError, RuntimeError) as exc:
        raise CommandError(str(exc)) from None
    return cfg


def _data(args: argparse.Namespace) -> tuple[object, dict]:
    from stnlab.data import DataError, load, make_dataset

    try:
        if args.data:
            if not Path(args.data).is_file():
                raise CommandError(f"no data file {args.data!r}")
            return load(args.data), {"path": str(Path(args.data).resolve())}
        info = {"variant": args.variant or "40x40", "source": args.source, "seed": args.data_seed}
        return make_dataset(**info), info
    except DataError as exc:
        raise CommandError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from stnlab.training import TrainingDivergedError, train

    cfg = _config(args)
    out = Path(args.out or f"runs/{args.model}-{args.size}-s{args.seed}")
    if not args.resume and any((out / f).exists() for f in ("checkpoint.pt", "summary.json")):
        raise CommandError(f"{out} already holds a run; pass --resume or choose another --out")
    data, info = _data(args)
    main = int(os.environ.get("RANK", "0")) == 0
    try:
        res = train(
            cfg, data, out_dir=out, resume=args.resume, progress=not args.quiet, data_info=info
        )
    except TrainingDivergedError as exc:
        raise CommandError(f"training diverged: {exc}") from None
    except (ValueError, FileExistsError) as exc:
        raise CommandError(str(exc)) from None
    s = res.summary
    if main and not args.quiet:
        print(
            f"{s['model']} ({s['size']}, {s['parameters']:,} parameters), {s['epochs']} epochs, "
            f"seed {s['seed']}: valid {s['valid_accuracy']:.2%}, test {s['test_accuracy']:.2%}, "
            f"{s['train_seconds']:.1f} s training ({s['train_images_per_second']:.0f} images/s) "
            f"-> {out}"
        )
    return 0
