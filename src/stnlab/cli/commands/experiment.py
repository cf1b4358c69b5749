"""``stnlab experiment``: run the study (models × epoch budgets × seeds) and write its report."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from stnlab.cli.flags import add_options, given
from stnlab.config import ExperimentConfig, TrainConfig
from stnlab.config.presets import PRESETS

HELP = "run a study of models × epoch budgets × seeds; write results.csv, summary.md, report"
WHERE = ["workers", "cluster", "shared_fs", "runs_per_gpu"]  # where the runs train


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Attach the experiment options."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", help=f"a named config: {', '.join(PRESETS)} (seed: the study)")
    src.add_argument("--config", type=Path, metavar="FILE", help="a TOML (or YAML) config file")
    p.add_argument("--out", type=Path, help="experiment folder (default runs/NAME)")
    add_options(p, ExperimentConfig, only=WHERE, show_default=False)
    add_options(p, TrainConfig, only=["device", "tensorboard"], show_default=False)
    p.add_argument("--dry-run", action="store_true", help="check the config, print the runs, stop")
    p.add_argument(
        "--plan",
        action="store_true",
        help="print the runs, the data, the training images and an estimated wall time "
        "(from a few seconds of training speed measured here); trains nothing",
    )
    p.add_argument("--no-report", action="store_true", help="skip report.html and the figures")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _configure(args: argparse.Namespace) -> ExperimentConfig:
    """The config from --preset or --config, with the flags given on the command line."""
    from stnlab.config import presets as ex

    config = ex.preset(args.preset) if args.preset else ex.load_config(args.config)
    config = replace(config, **given(args, ExperimentConfig))
    train = given(args, TrainConfig)
    return replace(config, train=replace(config.train, **train)) if train else config


def run(args: argparse.Namespace) -> int:
    """Check the whole config, run what is not finished, then write the report.

    Exit status 1 when some runs failed by themselves (the others' results are written).
    """
    from stnlab.experiment import describe_plan, runner

    config = _configure(args)
    out = args.out or Path("runs") / config.name
    if args.dry_run:
        print(describe_plan(config))
        return 0
    if args.plan:
        from stnlab.experiment.estimate import describe_cost

        print(describe_cost(config, out))
        return 0
    print(_precision(config))
    result = runner.run_experiment(config, out, progress=not args.quiet)
    failed = f", {len(result.failed)} failed" if result.failed else ""
    print(
        f"{len(result.trained)} runs trained, {len(result.skipped)} skipped{failed}, "
        f"in {result.seconds:.0f} s"
    )
    if not args.no_report and result.rows:
        from stnlab.report.html import write_report

        print(f"report:  {write_report(out)}")
    print(f"summary: {out / 'summary.md'}")
    print(f"results: {out / 'results.csv'}")
    return _failures(result.failed)


def _precision(config: ExperimentConfig) -> str:
    """The precision new runs train in here (resumed ones keep the one they recorded)."""
    from stnlab.train.devices import describe_precision

    line = describe_precision(config.train)
    return line + ("; cluster workers choose on their own hardware" if config.cluster else "")


def _failures(failed) -> int:
    """Say which runs failed (with a bug's traceback) on stderr; the exit status."""
    if not failed:
        return 0
    for f in failed:
        if f.traceback:
            print(f"traceback of run {f.name}:\n{f.traceback.rstrip()}", file=sys.stderr)
    names = ", ".join(f.name for f in failed)
    print(
        f"stnlab experiment: {len(failed)} run{'s' * (len(failed) > 1)} failed ({names}); "
        "the other runs' results are written; fix the cause and run the same command again "
        "to train what is missing",
        file=sys.stderr,
    )
    return 1
