"""Start a Dask cluster on SLURM with dask-jobqueue and print its address for `sct_rootlets_batch -scheduler`.

    pip install dask-jobqueue
    python batch/slurm_dask.py --jobs 8 --cores 4 --memory 16GB --walltime 04:00:00 &
    sct_rootlets_batch -path-data DS -path-output OUT -scheduler tcp://<printed address>

Each SLURM job is one Dask worker process that loads the model once and keeps it for all its images.
"""

import argparse
import time


def main() -> None:
    from dask_jobqueue import SLURMCluster

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=4, help="SLURM jobs (Dask workers)")
    parser.add_argument("--cores", type=int, default=4, help="cores per job")
    parser.add_argument("--memory", default="16GB", help="memory per job")
    parser.add_argument("--walltime", default="04:00:00")
    parser.add_argument("--queue", default=None, help="SLURM partition")
    args = parser.parse_args()
    cluster = SLURMCluster(cores=args.cores, processes=1, memory=args.memory, walltime=args.walltime,
                           queue=args.queue, job_script_prologue=[f"export OMP_NUM_THREADS={args.cores}"])
    cluster.scale(jobs=args.jobs)
    print(cluster.scheduler_address, flush=True)
    while True:  # keep the cluster alive until this script is stopped
        time.sleep(60)


if __name__ == "__main__":
    main()
