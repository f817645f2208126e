"""The ``process`` flow on Dask (``procpipe process --runner dask``), through ``prefect-dask``.

``task_runner(workers, address)`` is a ``prefect_dask.DaskTaskRunner``: connected to the scheduler
at ``address`` (``tcp://host:port``), or starting a local cluster of ``workers`` worker processes
with one thread each (parsing holds the GIL: one thread per process uses the cores). The batch tasks
then run on the Dask workers, each calling ``process_batch`` itself (no process pool inside a
worker); discovery and publishing stay in the flow process.

``quiet_dask()`` keeps distributed's start-up and shutdown chatter (closed comms, nannies
restarting, "Connection lost") out of the output: its loggers go to ERROR unless
``PROCPIPE_DEBUG`` is set.
"""

from __future__ import annotations

import logging
import os
from typing import Any

DASK_LOGGERS = ("distributed", "dask", "bokeh", "tornado", "asyncio")


def _debug() -> bool:
    return os.environ.get("PROCPIPE_DEBUG", "") not in ("", "0", "false")


def quiet_dask() -> None:
    """Distributed's loggers at ERROR here and in the processes the local cluster starts."""
    if _debug():
        return
    os.environ.setdefault("DASK_DISTRIBUTED__LOGGING__DISTRIBUTED", "error")
    os.environ.setdefault("DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__GIL__ENABLED", "false")
    for name in DASK_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    import dask

    dask.config.set({"distributed.logging.distributed": "error", "distributed.admin.tick.limit": "1h"})


def local_cluster_kwargs(workers: int) -> dict[str, Any]:
    """``distributed.LocalCluster`` arguments: ``workers`` processes, one thread each, no dashboard."""
    return {
        "n_workers": workers,
        "processes": True,
        "threads_per_worker": 1,
        "dashboard_address": None,
        "silence_logs": logging.CRITICAL if not _debug() else logging.WARNING,
    }


def task_runner(workers: int = 2, address: str | None = None) -> Any:
    """A ``DaskTaskRunner`` on the cluster at ``address``, or on a new local cluster of ``workers``."""
    quiet_dask()
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster", cluster_kwargs=local_cluster_kwargs(workers)
    )


def is_dask(runner: Any) -> bool:
    """Whether a task runner sends tasks to Dask (without importing prefect_dask when it is not)."""
    return type(runner).__module__.startswith("prefect_dask")
