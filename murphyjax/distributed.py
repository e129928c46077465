"""Multi-process (multi-host) JAX: ``jax.distributed`` initialisation from flags or environment variables.

    murphyjax.distributed.initialize()      # reads MURPHYJAX_COORDINATOR, MURPHYJAX_NUM_PROCESSES,
                                            # MURPHYJAX_PROCESS_ID; no-op when they are absent
    mesh = parse_mesh("data:-1")            # then spans every process's devices

On CPU, cross-process collectives go through gloo (``jax_cpu_collectives_implementation``). On TPU
pods and SLURM/Open MPI clusters ``initialize(auto=True)`` lets JAX discover everything itself. Every
process must run the same program; each feeds the same global batch and ``sharding.shard_batch``
keeps the rows its own devices hold.
"""

from __future__ import annotations

import argparse
import os

import jax

ENV = {"coordinator_address": "MURPHYJAX_COORDINATOR", "num_processes": "MURPHYJAX_NUM_PROCESSES",
       "process_id": "MURPHYJAX_PROCESS_ID"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --coordinator, --num-processes, --process-id (defaults from the environment)."""
    g = parser.add_argument_group("multi-process")
    g.add_argument("--coordinator", default=None, help=f"host:port of process 0 (env {ENV['coordinator_address']})")
    g.add_argument("--num-processes", type=int, default=None, help=f"env {ENV['num_processes']}")
    g.add_argument("--process-id", type=int, default=None, help=f"env {ENV['process_id']}")


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, auto: bool = False, cpu_collectives: str = "gloo") -> bool:
    """Initialise ``jax.distributed``; returns True if this is a multi-process run.

    Arguments left None are read from the environment (``ENV``). With none given anywhere and
    ``auto=False``, nothing happens (single process). Must run before any other JAX call.
    """
    coordinator_address = coordinator_address or os.environ.get(ENV["coordinator_address"])
    if num_processes is None and os.environ.get(ENV["num_processes"]):
        num_processes = int(os.environ[ENV["num_processes"]])
    if process_id is None and os.environ.get(ENV["process_id"]):
        process_id = int(os.environ[ENV["process_id"]])
    if not auto and coordinator_address is None:
        return False
    if not auto and (num_processes is None or process_id is None):
        raise ValueError("num_processes and process_id are required with a coordinator address "
                         f"(flags or env {ENV['num_processes']}, {ENV['process_id']})")
    if num_processes is not None and not 0 <= (process_id or 0) < num_processes:
        raise ValueError(f"process_id must be in [0, {num_processes}), got {process_id}")
    if cpu_collectives:
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    if auto:
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                                   process_id=process_id)
    return jax.process_count() > 1


def from_args(args: argparse.Namespace) -> bool:
    """``initialize`` with the values of ``add_arguments`` flags."""
    return initialize(args.coordinator, args.num_processes, args.process_id)
