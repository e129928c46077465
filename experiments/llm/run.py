"""Run the LLM Murphy experiments: plan the units, execute the unfinished ones, collect the records.

    records = run_llm(llm_preset("quick"), Path("runs/x"))    # resumable: re-running skips finished units

The run folder ``<out>/llm`` holds ``config.json`` (a different config in the same folder is refused),
one sub-folder per task with the datasets (Parquet), the reference policy and reward models
(safetensors) and one JSON record per finished run.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from murphyjax.experiments.llm import methods as M
from murphyjax.experiments.llm import shared
from murphyjax.experiments.llm.config import LLMLabConfig, config_hash


def units(cfg: LLMLabConfig) -> list[tuple]:
    """(method, variant, sweep) triples of one (task, seed); sweep = (name, value) or None."""
    out = []
    for m in cfg.methods:
        out += [(m, v, None) for v in M.VALID[m] if v in cfg.variants and
                (v == "base" or not cfg.variant_methods or m in cfg.variant_methods)]
        if m == "ppo":
            out += [(m, "base", ("kl_coef", k)) for k in cfg.kl_coefs if k != cfg.kl_coef]
        if m == "dpo":
            out += [(m, "base", ("beta", b)) for b in cfg.dpo_betas if b != cfg.dpo_beta]
    return out


def planned_units(cfg: LLMLabConfig) -> int:
    """Runs planned over every task: base units on every seed, variants on the first variant_seeds."""
    todo = units(cfg)
    nv = sum(u[1] != "base" for u in todo)
    with_variants = sum(not cfg.variant_tasks or t in cfg.variant_tasks for t in cfg.tasks)
    return len(cfg.tasks) * cfg.seeds * (len(todo) - nv) + with_variants * (cfg.variant_seeds or cfg.seeds) * nv


def task_units(cfg: LLMLabConfig, kind: str, todo: list) -> list:
    """The entries of ``todo`` that run on task ``kind`` (variants only on ``cfg.variant_tasks``)."""
    return [u for u in todo if u[1] == "base" or not cfg.variant_tasks or kind in cfg.variant_tasks]


def run_key(method, variant, sweep, seed) -> str:
    tag = "" if sweep is None else f"_{sweep[0]}={sweep[1]:g}"
    return f"run_{method}_{variant}{tag}_s{seed}"


def _folder(cfg: LLMLabConfig, out: Path) -> Path:
    folder = Path(out) / "llm"
    folder.mkdir(parents=True, exist_ok=True)
    cj = folder / "config.json"
    want = {"hash": config_hash(cfg), "config": cfg.to_json()}
    if cj.exists():
        have = json.loads(cj.read_text())
        if _hash_of(have) != want["hash"]:
            raise ValueError(f"{folder} holds an LLM run of a different configuration (hash {have.get('hash')}, "
                             f"this one {want['hash']}); choose another --out folder")
    cj.write_text(json.dumps(want, indent=1))
    return folder


def _hash_of(stored: dict) -> str:
    """The hash of a stored config.json under the current rule (stored configs may predate fields or rules)."""
    try:
        return config_hash(LLMLabConfig.from_json({**LLMLabConfig().to_json(), **stored["config"]}))
    except (KeyError, TypeError, ValueError):
        return stored.get("hash", "")


def unit_costs(folder: Path) -> dict[str, float]:
    """The longest measured seconds of each kind of finished unit in an LLM run folder: "rm" (a reward
    model with its gate) or a method name (its runs)."""
    costs: dict[str, float] = {}
    for p in Path(folder).glob("*/*.json"):
        name = p.stem
        kind = "rm" if name.startswith("rm_") else name.split("_")[1] if name.startswith("run_") else None
        if kind:
            try:
                sec = json.loads(p.read_text()).get("seconds")
            except (OSError, ValueError):
                continue
            if isinstance(sec, (int, float)):
                costs[kind] = max(costs.get(kind, 0.0), float(sec))
    return costs


class Deadline:
    """``--max-minutes``: a unit starts only when its estimated cost fits before the deadline. A unit's cost
    is the longest finished unit of the same kind (a reward model, or a run of the same method; ``costs``,
    from ``unit_costs`` and updated as units finish), else the longest of any kind; with nothing measured
    yet the unit starts. Once a unit does not fit, no further unit starts."""

    def __init__(self, minutes: float | None, costs: dict | None = None):
        self.end = None if minutes is None else time.time() + 60.0 * minutes
        self.stopped = False
        self.costs: dict[str, float] = dict(costs or {})

    def add(self, kind: str, seconds: float) -> None:
        self.costs[kind] = max(self.costs.get(kind, 0.0), float(seconds))

    def estimate(self, kind: str) -> float:
        return self.costs.get(kind, max(self.costs.values(), default=0.0))

    def allows(self, kind: str) -> bool:
        if self.end is None:
            return True
        if time.time() + self.estimate(kind) > self.end:
            self.stopped = True
        return not self.stopped


def _seed_units(cfg, setup, seed, todo, log, progress, deadline: Deadline | None = None) -> tuple[dict, list]:
    """Every unit of one (task, seed): the unfinished runs, training (or loading) a reward model only for
    a channel that still has one to run; with a ``deadline`` no unit starts that cannot finish before it."""
    cache, rms, runs = {}, {}, []
    deadline = deadline or Deadline(None)
    for method, variant, sweep in todo:
        key = run_key(method, variant, sweep, seed)
        channel = M.channel_for(method, variant)
        rec, rm_rec = setup.store.get(key), setup.store.get(f"rm_{channel}_s{seed}")
        if rec is None and not deadline.allows(method):
            continue
        if rec is None or rm_rec is None:
            if channel not in cache:
                if setup.store.get(f"rm_{channel}_s{seed}") is None and not deadline.allows("rm"):
                    continue
                t0 = time.time()
                cache[channel] = shared.reward_model(cfg, setup, channel, seed, log)
                deadline.add("rm", time.time() - t0)
            rm_rec = cache[channel][1]
        rms[f"{channel}_s{seed}"] = rm_rec
        if rec is None:
            rm, rm_rec, labels = cache[channel]
            ctx = M.Ctx(cfg, setup, method, variant, seed, rm, rm_rec, labels, log,
                        kl_coef=sweep[1] if sweep and sweep[0] == "kl_coef" else None,
                        beta=sweep[1] if sweep and sweep[0] == "beta" else None)
            rec = M.run(ctx)
            deadline.add(method, rec["seconds"])
            rec.update(rm_fingerprint=rm_rec.get("fingerprint"),
                       ref_fingerprint=(setup.store.get("reference") or {}).get("fingerprint"))
            setup.store.put(key, rec)
            progress(f"{setup.kind} {key}: true {rec['curve'][0]['true']:.3f} -> {rec['curve'][-1]['true']:.3f}, "
                     f"proxy {rec['curve'][0]['proxy']:.3f} -> {rec['curve'][-1]['proxy']:.3f} ({rec['seconds']:.1f} s)")
        else:
            progress(None)
        runs.append(rec)
    return rms, runs


def run_llm(cfg: LLMLabConfig, out: Path, log=print, max_minutes: float | None = None) -> dict:
    """Execute every unfinished unit; returns {task: {"rms": {...}, "runs": [records], "gates": {...}}}.

    ``max_minutes``: start no unit that cannot finish within that many minutes (``Deadline``); the
    units not started are left for the next call of the same command.

    Seeds run in ``cfg.workers`` threads (XLA executes them side by side on the CPU cores; every seed's
    numbers are the same as in a sequential run).
    """
    folder = _folder(cfg, out)
    deadline = Deadline(max_minutes, unit_costs(folder) if max_minutes is not None else None)
    todo = units(cfg)
    total = planned_units(cfg)
    state = {"done": 0, "t0": time.time()}
    lock = threading.Lock()

    def progress(msg):
        with lock:
            state["done"] += 1
            if msg:
                log(f"[llm {state['done']}/{total} {time.time() - state['t0']:6.1f}s] {msg}")

    # every task's reference policy first (a task whose reference does not fit is left for the next call);
    # then the units in waves of one seed: base runs of seed 0 on every task, then seed 1, ..., then the
    # intervention variants on the first variant_seeds seeds. Within a wave the reward model of a channel
    # is trained and gated before the first run that uses it, so every finished run follows its gate, and
    # a run stopped early holds whole seeds of every task (the tests across seeds need >= 3 of them)
    setups = {}
    for kind in cfg.tasks:
        if not (folder / kind / "reference.json").exists() and not deadline.allows("rm"):
            continue
        setups[kind] = shared.build_setup(cfg, kind, folder / kind, log)
        if any(m in cfg.methods for m in ("dpo", "ipo", "fdpo", "cai")):
            M._candidate_logps(setups[kind])  # shared by every seed: computed before the threads start
    phases = [([u for u in todo if u[1] == "base"], cfg.seeds),
              ([u for u in todo if u[1] != "base"], cfg.variant_seeds or cfg.seeds)]

    def wave(todo_p, seed):
        return [(kind, _seed_units(cfg, setups[kind], seed, task_units(cfg, kind, todo_p), log, progress, deadline))
                for kind in setups]

    outs = []
    for todo_p, seeds in phases:
        if not todo_p:
            continue
        with ThreadPoolExecutor(max_workers=max(1, min(cfg.workers, seeds))) as pool:
            outs += [o for w in pool.map(lambda sd: wave(todo_p, sd), range(seeds)) for o in w]
    results = {}
    for kind in setups:
        rms = {k: v for kd, o in outs if kd == kind for k, v in o[0].items()}
        results[kind] = {"rms": rms, "runs": [r for kd, o in outs if kd == kind for r in o[1]],
                         "gates": _gates(setups[kind].store, rms), "reference": setups[kind].store.get("reference")}
    return results


def _gates(store, rms: dict) -> dict:
    """The stored gate records of the reward models in ``rms`` (keyed like it: "<channel>_s<seed>")."""
    return {k: g for k in rms if (g := store.get(f"gate_{k}")) is not None}


def collect_llm(cfg: LLMLabConfig, out: Path) -> tuple[dict, dict]:
    """The finished units of a run folder, without computing or loading any model: (results as ``run_llm``
    returns them, {"planned": units planned, "finished": runs found}). A run is kept only with the
    reward-model record of its channel and seed."""
    folder = Path(out) / "llm"
    cj = folder / "config.json"
    if not cj.exists() or _hash_of(json.loads(cj.read_text())) != config_hash(cfg):
        raise ValueError(f"{folder} holds no LLM run of this configuration (hash {config_hash(cfg)})")
    todo = units(cfg)
    planned = planned_units(cfg)
    results, found = {}, 0
    for kind in cfg.tasks:
        store = shared.Store(folder / kind)
        rms, runs = {}, []
        for seed in range(cfg.seeds):
            for method, variant, sweep in task_units(cfg, kind, todo):
                rec = store.get(run_key(method, variant, sweep, seed))
                rm = store.get(f"rm_{M.channel_for(method, variant)}_s{seed}")
                if rec is None or rm is None:
                    continue
                rms[f"{rm['channel']}_s{seed}"] = rm
                runs.append(rec)
        found += len(runs)
        if runs:
            results[kind] = {"rms": rms, "runs": runs, "gates": _gates(store, rms), "reference": store.get("reference")}
    return results, {"planned": planned, "finished": found}
