"""Run the grid of rows as vmapped, jitted, sharded chunks that are saved atomically as they finish.

Rows are (d, alpha, eps, seed) in ``LabConfig.cells`` order. A row's PRNG key is derived from the
config seed and the row's *values* (alpha, eps, d, seed index), so a row's numbers do not depend
on the chunking, the device count or which other cells are in the grid (given equal settings).

Chunks group ``chunk_rows`` rows of one dimension d (one compiled shape per d), padded to a
multiple of the device count (padding rows repeat the last row and are dropped). Inputs are placed
with ``NamedSharding(mesh, P("rows"))``, so XLA partitions the vmapped computation along rows.
Before the first chunk runs, one executable per distinct chunk shape is compiled, the shapes
side by side in threads (``compile_all``). Each finished chunk is written to
``<store>/chunk_NNNN.npz`` through a temporary file and ``os.replace``: a kill loses at most the
chunk in flight, and re-running resumes. The store is keyed by the hash of the resolved config
and of the simulator's source code.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from murphyjax.experiments.common.store import load_npz, load_saved, save_npz, source_hash
from murphyjax.experiments.lab import row as lab
from murphyjax.experiments.lab.config import LabConfig, config_hash


def rows(cfg: LabConfig) -> list[dict]:
    """The row table: one dict per (d, alpha, eps, seed) with its position."""
    return [{"d": d, "alpha": a, "eps": e, "seed": s} for (d, a, e) in cfg.cells for s in range(cfg.seeds)]


def row_key_data(cfg: LabConfig, row: dict) -> np.ndarray:
    """uint32 key data of a row: fold the row's values into key(cfg.seed)."""
    k = jax.random.key(cfg.seed)
    for v in (round(row["alpha"] * 1e9), round(row["eps"] * 1e9), row["d"], row["seed"]):
        k = jax.random.fold_in(k, v)
    return np.asarray(jax.random.key_data(k))


def chunks(cfg: LabConfig) -> list[list[int]]:
    """Row indices of each chunk (never mixing dimensions)."""
    table = rows(cfg)
    out, cur = [], []
    for i, r in enumerate(table):
        if cur and (len(cur) == cfg.chunk_rows or table[cur[0]]["d"] != r["d"]):
            out.append(cur)
            cur = []
        cur.append(i)
    return out + ([cur] if cur else [])


def _chunk_inputs(cfg, idx, table, devices):
    """(sharded inputs, RowSpec) of a chunk: rows padded to a multiple of the device count."""
    d = table[idx[0]]["d"]
    pad = (-len(idx)) % len(devices)
    full = idx + [idx[-1]] * pad
    keys = np.stack([row_key_data(cfg, table[i]) for i in full])
    alphas = np.asarray([table[i]["alpha"] for i in full], np.float32)
    epss = np.asarray([table[i]["eps"] for i in full], np.float32)
    sh = NamedSharding(Mesh(np.asarray(devices), ("rows",)), P("rows"))
    return [jax.device_put(a, sh) for a in (keys, alphas, epss)], lab.RowSpec.from_config(cfg, d, max(cfg.alphas))


def _rows_from_key_data(key_data, alphas, epss, spec):
    return lab.run_rows(jax.random.wrap_key_data(key_data), alphas, epss, spec)


_jitted = jax.jit(_rows_from_key_data, static_argnums=3, compiler_options=lab.COMPILER_OPTIONS)
_executables: dict = {}  # (spec, input avals and shardings) -> compiled executable (this process)


def _signature(args, spec):
    return spec, tuple((a.shape, str(a.dtype), a.sharding) for a in args)


def _compile(args, spec):
    key = _signature(args, spec)
    if key not in _executables:
        _executables[key] = _jitted.lower(*args, spec).compile()
    return _executables[key]


def compile_all(cfg: LabConfig, plan, table, devices) -> float:
    """Compile one executable per distinct chunk shape (one per dimension d), concurrently.

    XLA compiles in C++ without holding the GIL, so on a multi-core CPU the shapes compile side by
    side (and with the persistent compilation cache on, a re-run loads them from disk). Returns
    the wall-clock seconds spent."""
    from concurrent.futures import ThreadPoolExecutor

    t0 = time.perf_counter()
    todo = {}
    for idx in plan:
        args, spec = _chunk_inputs(cfg, idx, table, devices)
        if _signature(args, spec) not in _executables:
            todo.setdefault(_signature(args, spec), (args, spec))
    if todo:
        with ThreadPoolExecutor(max_workers=min(len(todo), os.cpu_count() or 1)) as ex:
            list(ex.map(lambda a: _compile(*a), todo.values()))
    return time.perf_counter() - t0


def _run_chunk(cfg, idx, table, devices):
    args, spec = _chunk_inputs(cfg, idx, table, devices)
    out = _compile(args, spec)(*args)
    return {k: np.asarray(v)[: len(idx)] for k, v in out.items()}


def _load_chunk(path: str, n_rows: int) -> dict | None:
    """A saved chunk of ``n_rows`` rows, or None: absent, or truncated, corrupt or of another size (reported in
    one line and removed, so it is recomputed; atomic saves make this rare: a disk error, a copy cut short)."""
    def load(p):
        arrays = load_npz(p)
        if not arrays or any(v.shape[:1] != (n_rows,) for v in arrays.values()):
            raise ValueError(f"it does not hold the chunk's {n_rows} rows")
        return arrays

    return load_saved(path, load)


def code_hash() -> str:
    """Hash of the simulator's source (``murphyjax.bandits``, the row and this runner): a code change
    never reuses chunks computed by older code."""
    import murphyjax.bandits as mb

    return source_hash(mb, lab, sys.modules[__name__])


def store_dir(out_dir: str, cfg: LabConfig) -> str:
    """chunks/<config hash>-<code hash>: the resume key."""
    return os.path.join(out_dir, "chunks", f"{config_hash(cfg)}-{code_hash()}")


def run(cfg: LabConfig, out_dir: str, *, devices=None, progress: bool = True,
        on_chunk: Callable[[int], None] | None = None) -> tuple[list[dict], dict, dict]:
    """Run (or resume) every chunk of ``cfg``; return (row table, stacked arrays, timing info).

    Args:
      cfg: the resolved configuration. out_dir: the run folder (chunks go under chunks/<hash>/).
      devices: devices to shard over (default: all of ``jax.devices()``).
      progress: show a tqdm bar. on_chunk: callback after each chunk is saved (tests use it).
    """
    devices = list(jax.devices()) if devices is None else list(devices)
    table = rows(cfg)
    plan = chunks(cfg)
    store = store_dir(out_dir, cfg)
    os.makedirs(store, exist_ok=True)
    paths = [os.path.join(store, f"chunk_{i:04d}.npz") for i in range(len(plan))]
    parts = [_load_chunk(p, len(idx)) for p, idx in zip(paths, plan)]
    done = [q is not None for q in parts]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(plan), initial=sum(done), unit="chunk", desc="reproduce", dynamic_ncols=True)
    t0 = time.perf_counter()
    todo = [idx for idx, ok in zip(plan, done) if not ok]
    if bar is not None and todo:
        bar.set_postfix_str("compiling")
    t_compile = compile_all(cfg, todo, table, devices) if todo else 0.0
    computed = 0
    for i, idx in enumerate(plan):
        if done[i]:
            continue
        r0 = table[idx[0]]
        if bar is not None:
            bar.set_postfix_str(f"d={r0['d']} alpha={r0['alpha']} eps={r0['eps']}")
        parts[i] = _run_chunk(cfg, idx, table, devices)
        save_npz(paths[i], parts[i])
        computed += 1
        if bar is not None:
            bar.update(1)
        if on_chunk is not None:
            on_chunk(i)
    if bar is not None:
        bar.close()
    arrays = {k: np.concatenate([q[k] for q in parts]) for k in parts[0]}
    info = {"chunks": len(plan), "chunks_computed": computed, "chunks_resumed": len(plan) - computed,
            "seconds": time.perf_counter() - t0, "compile_seconds": t_compile, "devices": [str(d) for d in devices]}
    return table, arrays, info
