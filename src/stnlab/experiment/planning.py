"""An experiment's plan: which runs it needs, the config of each, and the path it takes.

With a constant learning rate a run of E epochs passes through the states of every
shorter run with the same seed, so one run per (model, seed), evaluated at each
budget, gives the protocol's numbers (*budget reuse*); a schedule tied to the total
number of epochs needs one run per (model, budget, seed) (*separate runs*).

Example:
    >>> from stnlab.config.presets import preset
    >>> [job.name for job in plan(preset("smoke"))][:2]
    ['cnn-s0', 'cnn-s1']
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from stnlab import models
from stnlab.config import ConfigError, ExperimentConfig, RunConfig
from stnlab.config.experiment import TRANSFORMER_AXES, Cell, label_of
from stnlab.data import describe, train_size

__all__ = [
    "Job",
    "axis_names",
    "cell_config",
    "check_models",
    "describe_plan",
    "path_taken",
    "plan",
    "reuses_budgets",
    "run_config",
]


@dataclass(frozen=True)
class Job:
    """One training run: ``epochs`` of ``model`` with ``seed``, read out at each of ``budgets``."""

    model: str
    seed: int
    epochs: int
    budgets: tuple[int, ...]
    name: str  # the run's folder under DIR/runs
    cell: Cell = ()  # the value of each axis of the experiment's grid, where it trains
    # The cells whose results it gives: more than its own for a design that ignores an axis
    # (a cnn across model.transform), which would otherwise train the same run again.
    cells: tuple[Cell, ...] = ((),)


def reuses_budgets(config: ExperimentConfig) -> bool:
    """True when one run per (model, seed) gives every budget's numbers (constant LR)."""
    return config.reuse and config.train.schedule == "constant"


def plan(config: ExperimentConfig) -> list[Job]:
    """The runs the config needs, in the order they are started (its models checked first):
    the runs of each cell of the grid in turn. A design trains once for all the values of
    the axes it ignores (:func:`ignored_axes`): its run is named without them, trains in
    the cell of their first values and gives the results of every such cell."""
    check_models(config)
    ignored, names = ignored_axes(config), dict(zip(config.grid, axis_names(config), strict=True))
    jobs: dict[tuple[str, Cell], Job] = {}
    for cell in config.cells():
        for job in _cell_plan(config):
            skip = ignored[job.model]
            home = tuple((a, config.grid[a][0] if a in skip else v) for a, v in cell)
            if (key := (job.name, home)) in jobs:
                jobs[key] = replace(jobs[key], cells=(*jobs[key].cells, cell))
                continue
            suffix = "".join(f"_{names[a]}={label_of(v)}" for a, v in cell if a not in skip)
            jobs[key] = replace(job, name=job.name + suffix, cell=home, cells=(cell,))
    return list(jobs.values())


def ignored_axes(config: ExperimentConfig) -> dict[str, frozenset[str]]:
    """The grid's axes each design ignores: the transformers' (``TRANSFORMER_AXES``) for a
    design without a spatial transformer (built once to find out), none for the others."""
    if not config.grid:
        return dict.fromkeys(config.models, frozenset())
    first = cell_config(config, config.cells()[0]).model
    return {
        m: frozenset()
        if models.create(replace(first, name=m, pretrained=False)).transformers
        else TRANSFORMER_AXES & set(config.grid)
        for m in config.models
    }


def _cell_plan(config: ExperimentConfig) -> list[Job]:
    """The runs of one cell: one per (model, seed), or per (model, budget, seed)."""
    if reuses_budgets(config):
        top = max(config.budgets)
        return [
            Job(m, s, top, config.budgets, f"{m}-s{s}") for m in config.models for s in config.seeds
        ]
    return [
        Job(m, s, b, (b,), f"{m}-e{b}-s{s}")
        for b in sorted(config.budgets, reverse=True)  # longest first: workers finish together
        for m in config.models
        for s in config.seeds
    ]


def axis_names(config: ExperimentConfig) -> list[str]:
    """How run names call each axis: its field's name (``size``), or the whole key where two
    axes share a field name (``data.seed``, ``train.seed``)."""
    short = [axis.rpartition(".")[2] for axis in config.grid]
    return [s if short.count(s) == 1 else axis for s, axis in zip(short, config.grid, strict=True)]


def cell_config(config: ExperimentConfig, cell: Cell) -> ExperimentConfig:
    """The experiment in one cell of its grid (itself when it has no axes)."""
    return config.at(cell) if cell else config


def run_config(
    config: ExperimentConfig, job: Job, device: str | None = None, threads: int | None = None
) -> RunConfig:
    """The config of one job's run: the experiment's in the job's cell, with the job's model,
    epochs and seed (and ``device``/``threads`` where given).

    Besides its budgets a run is evaluated every ``train.eval_every`` epochs, by default
    about 50 times (the points of the training curves).
    """
    config = cell_config(config, job.cell)
    every = config.train.eval_every or max(1, job.epochs // 50)
    train = replace(
        config.train,
        epochs=job.epochs,
        seed=job.seed,
        eval_at=job.budgets,
        eval_every=every,
        iterations=config.steps_per_epoch(train_size(config.data)),
        device=device or config.train.device,
        threads=threads or config.train.threads,
    )
    return RunConfig(replace(config.model, name=job.model), train, config.data)


def check_models(config: ExperimentConfig) -> None:
    """Refuse a design that no one registered, before anything runs."""
    known = models.names()
    for name in config.models:
        if name not in known:
            raise ConfigError(
                f"models: unknown model {name!r}; known: {', '.join(known)}", "models"
            )


def path_taken(config: ExperimentConfig) -> str:
    """Which path the experiment takes (budget reuse or separate runs), and why."""
    t, swept = config.train, config.grid.keys()
    # a field the grid sweeps is named below with the grid's values, not its base value here
    optimizer = "" if "train.optimizer" in swept else ("Adam" if t.optimizer == "adam" else "SGD")
    lr = "" if "train.lr" in swept else f"lr {t.lr:g}"
    texts = [
        "" if "train.batch_size" in swept else f"batch {t.batch_size}",
        f"{optimizer} {lr}".strip(),
        "" if "model.size" in swept else f"{config.model.size}-size models",
    ]
    if config.iterations is not None:
        texts.append(f"{config.iterations} steps an epoch")
    setting = ", ".join(text for text in texts if text)
    if config.grid:
        axes = "; ".join(f"{a} = {', '.join(map(label_of, v))}" for a, v in config.grid.items())
        setting += f"{'; ' if setting else ''}in every cell of the grid ({axes})"
    if reuses_budgets(config):
        return (
            f"Budget reuse: one {max(config.budgets)}-epoch run per (model, seed), evaluated "
            f"after epochs {', '.join(map(str, config.budgets))} (constant learning rate); "
            + setting
        )
    why = "budget reuse is off" if t.schedule == "constant" else f"the {t.schedule} schedule"
    why += " depends on the total epochs" if t.schedule != "constant" else ""
    return f"Separate runs: one per (model, budget, seed), since {why}; " + setting


def describe_plan(config: ExperimentConfig) -> str:
    """The runs an experiment needs, one line each, after the path it takes."""
    jobs = plan(config)
    lines = [f"experiment {config.name!r}: {len(jobs)} runs. {path_taken(config)}."]
    datas = {describe(cell_config(config, job.cell).data): None for job in jobs}
    lines += [f"data: {d}" for d in datas]
    for job in jobs:
        at = ", ".join(map(str, job.budgets))
        lines.append(
            f"  runs/{job.name}: {job.model}, seed {job.seed}, {job.epochs} epochs, read at {at}"
        )
    return "\n".join(lines)
