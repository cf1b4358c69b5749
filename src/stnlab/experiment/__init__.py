"""Running an experiment: its plan, where its runs train (here, worker processes, a Dask
cluster), what it will cost, and results.csv and summary.md at the end."""

from stnlab.experiment.planning import Job, describe_plan, plan, reuses_budgets, run_config
from stnlab.experiment.runner import ExperimentResult, run_experiment

__all__ = [
    "ExperimentResult",
    "Job",
    "describe_plan",
    "plan",
    "reuses_budgets",
    "run_config",
    "run_experiment",
]
