"""Running training jobs on a Dask cluster: data sent once, live events, run folders brought home.

Used only for ``--cluster``. Dask is imported inside the functions, so importing stnlab
(this package included) never imports Dask, and a missing Dask is one line saying what
to install (:data:`INSTALL_HINT`).

How :func:`run_jobs` runs jobs:

* The data set goes to each worker process once; each job gets its worker's copy. The
  scheduler keeps it (pickled, in a Dask ``Variable``), so a worker that joins later,
  or replaces a lost one, fetches it too.
* Each job runs ``job_fn(spec, ctx)`` on a worker (:class:`JobContext`) and sends records
  with ``ctx.emit``; they reach ``on_event`` on the client as Dask events
  (``Worker.log_event`` → ``Client.subscribe_topic``), not through files.
* No shared filesystem is assumed. The client writes a random token file into the
  experiment folder; a worker that reads the same token at the same path shares the folder
  and trains the run in place (resuming from its checkpoint after a retry). Any other worker
  trains in a temporary folder, seeded with the files the run folder already holds, and
  returns the folder's files, which the client writes atomically into the run folder.
* A lost worker costs no result: the scheduler runs its task again elsewhere (up to
  ``distributed.scheduler.allowed-failures`` times, default 3), and ``on_retry`` hears of
  it (:class:`Retry`: where the job went on, and from which epoch). A job that fails by itself
  is not retried: its error comes back once, in its :class:`JobOutcome`, and the others go on.
* Ctrl-C cancels every job submitted; running ones stop at their next event.
* Jobs given ``resources={"GPU": 1}`` run only on workers started with ``--resources GPU=K``;
  each takes a free slot of its worker and trains on ``cuda:(slot % visible GPUs)``
  (:mod:`stnlab.experiment.placement`).

Example:
    >>> with open_client("local:2") as client:  # doctest: +SKIP
    ...     outcomes = run_jobs(client, train_one, jobs, workdir="runs/demo", data=ds)
"""

from stnlab.experiment.cluster.client import (
    CONNECT_CHECK_SECONDS,
    EVENT_WAIT_SECONDS,
    check_reachable,
    cluster_threads,
    detect_shared,
    open_client,
    parse_address,
    run_jobs,
)
from stnlab.experiment.cluster.jobs import (
    INSTALL_HINT,
    ClusterError,
    ClusterJob,
    JobCancelledError,
    JobContext,
    JobOutcome,
    Record,
    Retry,
)
from stnlab.experiment.cluster.worker import checkpoint_epoch

__all__ = [
    "CONNECT_CHECK_SECONDS",
    "EVENT_WAIT_SECONDS",
    "INSTALL_HINT",
    "ClusterError",
    "ClusterJob",
    "JobCancelledError",
    "JobContext",
    "JobOutcome",
    "Record",
    "Retry",
    "check_reachable",
    "checkpoint_epoch",
    "cluster_threads",
    "detect_shared",
    "open_client",
    "parse_address",
    "run_jobs",
]
