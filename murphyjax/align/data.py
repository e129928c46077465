"""The tasks as Hugging Face ``datasets`` (saved as Parquet), and any local preference file.

Columns follow the convention users and TRL know: ``prompt``, ``chosen``, ``rejected`` (preference
pairs) or ``prompt``, ``completion`` (demonstrations), plus the exact ``chosen_utility`` /
``rejected_utility`` and the hardness label ``hard`` (and ``chosen_hacked``, ``rejected_hacked``,
``value``, ``asserted``, ``routed``, ``queries`` for the generated tasks).

    ds = preference_dataset(tasks.TaskConfig(), n=2000, seed=0)        # crowd-labelled
    ds.to_parquet("pairs.parquet")
    ds = load_preferences("pairs.parquet")                               # or .jsonl / .json
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from murphyjax.align import feedback, tasks

REQUIRED = ("prompt", "chosen", "rejected")


def _dataset(cols: dict):
    import datasets

    return datasets.Dataset.from_dict({k: list(v) for k, v in cols.items()})


def prompt_dataset(cfg: tasks.TaskConfig, n: int, seed: int = 0, rho: float = 0.0):
    """Evaluation prompts with hard fraction (1 + rho) alpha (rho > 0: the shifted law mu_rho)."""
    frac = (1.0 + rho) * cfg.alpha
    if not 0 <= frac <= 1:
        raise ValueError(f"rho must keep (1 + rho) alpha in [0, 1]; got rho={rho!r} with alpha={cfg.alpha!r}")
    return _dataset(tasks.make_prompts(cfg, n, np.random.default_rng([seed, 1]), hard_fraction=frac))


def sft_dataset(cfg: tasks.TaskConfig, n: int, seed: int = 0):
    """Demonstrations from the base policy: prompt, completion, utility, hacked, hard, value, asserted."""
    rng = np.random.default_rng([seed, 2])
    P = tasks.make_prompts(cfg, n, rng)
    demos = tasks.sample_base(cfg, P, rng)
    U, H, _ = tasks.score_batch(cfg, P, demos)
    return _dataset({**P, "completion": demos, "utility": U.tolist(), "hacked": H.astype(bool).tolist()})


def preference_dataset(cfg: tasks.TaskConfig, n: int, seed: int = 0, channel: str = "crowd",
                       fb: feedback.FeedbackConfig | None = None, candidates: dict | None = None, prob_a=None):
    """Preference pairs labelled through ``channel`` (``feedback.CHANNELS``).

    ``candidates`` (``tasks.candidate_pairs``) may be shared across channels so that only the labels
    differ; by default they are drawn from ``seed``.
    """
    fb = fb or feedback.FeedbackConfig()
    c = candidates if candidates is not None else tasks.candidate_pairs(cfg, n, np.random.default_rng([seed, 3]))
    rng = np.random.default_rng([seed, 4, feedback.CHANNELS.index(channel)])
    return _dataset(feedback.label_pairs(cfg, fb, c, channel, rng, prob_a=prob_a))


def load_preferences(path: str | Path):
    """A local preference dataset (``.parquet``, ``.jsonl`` or ``.json``) with prompt/chosen/rejected columns.

    Conversational rows (lists of ``{"role", "content"}`` messages) are flattened to the last user
    turn (prompt) and the last assistant turn (chosen / rejected). Raises ``ValueError`` naming the
    missing columns.
    """
    import datasets

    path = Path(path)
    kind = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}.get(path.suffix)
    if kind is None:
        raise ValueError(f"path must end in .parquet, .jsonl or .json; got {path.name!r}")
    if not path.exists():
        raise ValueError(f"path: no such file {path}")
    ds = datasets.load_dataset(kind, data_files=str(path), split="train")
    missing = [c for c in REQUIRED if c not in ds.column_names]
    if missing:
        raise ValueError(f"{path.name}: missing column(s) {missing}; a preference dataset needs {list(REQUIRED)}")

    def flat(row):
        out = {}
        for k in REQUIRED:
            v = row[k]
            if isinstance(v, list):
                role = "user" if k == "prompt" else "assistant"
                turns = [m["content"] for m in v if m.get("role") == role]
                v = turns[-1] if turns else (v[-1]["content"] if v else "")
            out[k] = v
        return out

    if any(isinstance(ds[0][k], list) for k in REQUIRED):
        ds = ds.map(flat)
    return ds


def columns(ds) -> dict:
    """A dataset as a dict of lists (what ``tasks`` and ``feedback`` functions take)."""
    return {k: list(ds[k]) for k in ds.column_names}


def to_parquet(ds_or_cols, path) -> Path:
    """Write a dataset (or a dict of columns) as Parquet, quietly; returns the path."""
    import datasets

    ds = _dataset(ds_or_cols) if isinstance(ds_or_cols, dict) else ds_or_cols
    datasets.disable_progress_bars()
    try:
        ds.to_parquet(str(path))
    finally:
        datasets.enable_progress_bars()
    return Path(path)
