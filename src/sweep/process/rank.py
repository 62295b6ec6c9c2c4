"""Ranks 1..K-1 of a data-parallel sweep trial (`trainer.devices=K`), forked by the trial
process, which is rank 0 (src/train/distributed.other_ranks). Each trains the same configuration
on its share of the data, with the trial's callback so that it stops when rank 0's pruner says
so, and logs nothing itself: rank 0 logs what every rank measured."""

from __future__ import annotations

import multiprocessing

from src.sweep.process.job import TrialJob


def rank_starter(job: TrialJob, conn):
    """start(k) -> the process of rank k, forked from this one (the trial process; conn: its
    pipe to the driver, which a rank closes so the driver sees the pipe end with rank 0)."""
    fork = multiprocessing.get_context("fork")

    def start(k: int):
        name = f"trial-{job.number}-rank{k}"
        proc = fork.Process(target=rank_main, args=(job, k, conn), name=name)
        proc.start()
        return proc

    return start


def rank_main(job: TrialJob, k: int, conn) -> None:
    conn.close()
    from src.sweep.process.callback import TrialCallback
    from src.train.distributed import become_rank, stop_with_parent
    from src.train.run import train

    become_rank(k)
    stop_with_parent()
    train(job.config, callbacks=[TrialCallback(job, conn=None)], estimated=job.estimate)
