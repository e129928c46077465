"""Checkpoints through orbax, behind one small class: train state (model, optimiser, step, RNG) + JSON metadata.

    ckpt = Checkpointer("/abs/dir", max_to_keep=3)
    ckpt.save(step, state, {"data_position": n_examples})
    state, meta = ckpt.restore(like=fresh_state)        # onto fresh_state's devices / NamedShardings
    ckpt.close()

Saves are asynchronous (training continues while the arrays are written) and atomic: a run killed
mid-save leaves no readable partial step, and ``latest_step`` only sees finished ones. Restoring
needs a target with concrete shardings (a fresh state built on the mesh, or ``abstract``).
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import orbax.checkpoint as ocp


def abstract(tree, shardings=None):
    """ShapeDtypeStructs of ``tree`` carrying concrete shardings (its own, or ``shardings``)."""
    if shardings is None:
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


class Checkpointer:
    """Keep the last ``max_to_keep`` checkpoints of a training run in ``directory``."""

    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 3, *, async_save: bool = True):
        if max_to_keep < 1:
            raise ValueError(f"max_to_keep must be >= 1, got {max_to_keep}")
        self.directory = Path(directory).expanduser().resolve()  # orbax needs absolute paths
        opts = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                            enable_async_checkpointing=async_save)
        self._mgr = ocp.CheckpointManager(self.directory, options=opts)

    def latest_step(self) -> int | None:
        """The newest finished checkpoint's step, or None."""
        return self._mgr.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._mgr.all_steps())

    def save(self, step: int, state, meta: dict | None = None, *, force: bool = False) -> bool:
        """Save ``state`` (a pytree of arrays) and JSON-able ``meta`` as ``step``; returns whether it saved."""
        return self._mgr.save(int(step), force=force, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(dict(meta or {}))))

    def restore(self, like, step: int | None = None):
        """(state, meta) of ``step`` (default: latest), placed like ``like`` (arrays or ``abstract(...)``)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        target = like if _is_abstract(like) else abstract(like)
        out = self._mgr.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
        return out["state"], dict(out["meta"] or {})

    def wait(self) -> None:
        """Block until pending asynchronous saves are on disk."""
        self._mgr.wait_until_finished()

    def close(self) -> None:
        self._mgr.wait_until_finished()
        self._mgr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _is_abstract(tree) -> bool:
    leaves = jax.tree.leaves(tree)
    return bool(leaves) and all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves)
