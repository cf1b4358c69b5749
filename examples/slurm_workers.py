"""Dask workers for ``stnlab experiment --cluster`` as Slurm jobs, through dask-jobqueue.

Run it on the login node and keep it running while the study runs; it prints the address
to give ``--cluster``:

    pip install dask-jobqueue
    python examples/slurm_workers.py --queue cpu --jobs 4 &  # 4 nodes × 16 workers (kill %1: end)
    stnlab experiment --preset seed --cluster tcp://LOGIN-NODE:PORT --out runs/seed

    python examples/slurm_workers.py --queue gpu --gpus 1 --runs-per-gpu 4 --jobs 2
    stnlab experiment --preset seed --device cuda --cluster tcp://LOGIN-NODE:PORT

Not run on a Slurm cluster (the machines stnlab is developed on have none); its batch
scripts were checked with ``--dry-run`` against dask-jobqueue 0.9.0, which prints the
script it would submit: the first thing to check on a new site.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queue", required=True, help="the Slurm partition")
    p.add_argument("--account", help="the account to charge, where the site needs one")
    p.add_argument("--jobs", type=int, default=1, help="Slurm jobs (nodes) to start")
    p.add_argument("--cores", type=int, default=16, help="cores per job: CPU workers per job")
    p.add_argument("--memory", default="32GB", help="memory per job")
    p.add_argument("--walltime", default="12:00:00")
    p.add_argument("--gpus", type=int, default=0, help="GPUs per job (one worker per job)")
    p.add_argument("--runs-per-gpu", type=int, default=4, help="runs each GPU trains at once")
    p.add_argument("--dry-run", action="store_true", help="print the batch script and stop")
    args = p.parse_args()

    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        sys.exit("slurm_workers.py needs dask-jobqueue: pip install dask-jobqueue")

    if args.gpus:  # one worker per job holding GPU=K units: K runs at once over its GPUs
        units = args.gpus * args.runs_per_gpu
        shape = dict(
            cores=units,
            processes=1,
            job_extra_directives=[f"--gres=gpu:{args.gpus}"],
            worker_extra_args=["--resources", f"GPU={units}"],
        )
    else:  # one single-thread worker per core: these small nets train best that way
        shape = dict(cores=args.cores, processes=args.cores)
    cluster = SLURMCluster(
        queue=args.queue,
        account=args.account,
        memory=args.memory,
        walltime=args.walltime,
        local_directory="/tmp",
        **shape,
    )
    if args.dry_run:
        print(cluster.job_script())
        cluster.close()
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `kill` also cancels the jobs
    try:
        cluster.scale(jobs=args.jobs)
        print(f"stnlab experiment ... --cluster {cluster.scheduler_address}", flush=True)
        while True:  # the scheduler lives in this process
            time.sleep(60)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.close()  # cancels the Slurm jobs


if __name__ == "__main__":
    main()
