"""``stnlab experiment``: run the study (models × epoch budgets × seeds) and write its report."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from stnlab.cli import add_options, given
from stnlab.config import ExperimentConfig, TrainConfig
from stnlab.experiment import PRESETS

HELP = "run a study of models × epoch budgets × seeds; write results.csv, summary.md, report"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Attach the experiment options."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", help=f"a named config: {', '.join(PRESETS)} (seed: the study)")
    src.add_argument("--config", type=Path, metavar="FILE", help="a TOML (or YAML) config file")
    p.add_argument("--out", type=Path, help="experiment folder (default runs/NAME)")
    add_options(p, ExperimentConfig, only=["workers"], show_default=False)
    add_options(p, TrainConfig, only=["device", "tensorboard"], show_default=False)
    p.add_argument("--dry-run", action="store_true", help="check the config, print the runs, stop")
    p.add_argument("--no-report", action="store_true", help="skip report.html and the figures")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Check the whole config, run what is not finished, then write the report."""
    from stnlab import experiment as ex
    from stnlab import runner

    config = ex.preset(args.preset) if args.preset else ex.load_config(args.config)
    out = args.out or Path("runs") / config.name
    if args.dry_run:
        print(runner.describe_plan(config))
        return 0
    workers = given(args, ExperimentConfig).get("workers")
    device = given(args, TrainConfig).get("device")
    if "tensorboard" in given(args, TrainConfig):  # every run logs to DIR/NAME or its folder
        train = replace(config.train, tensorboard=given(args, TrainConfig)["tensorboard"])
        config = replace(config, train=train)
    result = runner.run_experiment(config, out, workers, device, not args.quiet)
    print(
        f"{len(result.trained)} runs trained, {len(result.skipped)} skipped, "
        f"in {result.seconds:.0f} s"
    )
    if not args.no_report:
        from stnlab.report import write_report

        print(f"report:  {write_report(out)}")
    print(f"summary: {out / 'summary.md'}")
    print(f"results: {out / 'results.csv'}")
    return 0
