"""Flaggers a practitioner can build: a logistic probe on a model's features, trained on a small audited set.

The routing interventions (paper v3 Theorem 3) need a flagger h(x) of hard prompts, MAPS (App. D.3)
a flagger h(x, y) of hacked responses. The
oracle h(x) = 1{x hard} is the labelled upper bound; what a practitioner has is a small audited
set of prompts whose hardness a careful annotator has checked. ``fit_probe`` trains an
L2-regularised logistic regression on features of those prompts (mean-pooled final hidden states of
the reference policy, ``prompt_features``; for responses, ``sequence_features``); ``rates`` measures its true- and false-positive rates
(tau, phi) on held-out prompts, which are the numbers Theorem 3's and D.3's predictions take.

    X = prompt_features(graphdef, ref, ids, mask, batch=16)
    probe = fit_probe(X[audit], hard[audit])
    tau, phi = rates(probe.predict(X[held_out]), hard[held_out])
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from murphyjax.align import core


@functools.partial(jax.jit, static_argnames="graphdef")
def _pooled(graphdef, params, ids, mask):
    h, _ = core.hidden(graphdef, params, ids, mask)
    m = mask.astype(jnp.float32)[..., None]
    return jnp.sum(h.astype(jnp.float32) * m, 1) / jnp.maximum(jnp.sum(m, 1), 1.0)


def prompt_features(graphdef, params, ids, mask, batch: int) -> np.ndarray:
    """Mean over the valid tokens of the final hidden states, (n, D) float64."""
    return np.asarray(core.batched(functools.partial(_pooled, graphdef, params), [ids, mask], batch), np.float64)


@functools.partial(jax.jit, static_argnames="graphdef")
def _last(graphdef, params, ids, mask):
    h, _ = core.hidden(graphdef, params, ids, mask)
    return jnp.take_along_axis(h, core.last_index(mask)[:, None, None], 1)[:, 0].astype(jnp.float32)


def sequence_features(graphdef, params, ids, mask, batch: int) -> np.ndarray:
    """Final hidden state at the last valid token of (prompt, response) sequences, (n, D) float64 (the
    position a reward model's head reads): features for a flagger of responses."""
    return np.asarray(core.batched(functools.partial(_last, graphdef, params), [ids, mask], batch), np.float64)


@dataclasses.dataclass(frozen=True)
class Probe:
    """A logistic probe: flag = 1{w . (x - mean) / scale + b > 0}; ``to_json`` / ``from_json`` store it."""

    w: np.ndarray
    b: float
    mean: np.ndarray
    scale: np.ndarray

    def logit(self, X) -> np.ndarray:
        return ((np.asarray(X, np.float64) - self.mean) / self.scale) @ self.w + self.b

    def predict(self, X) -> np.ndarray:
        return self.logit(X) > 0

    def to_json(self) -> dict:
        return {"w": self.w.tolist(), "b": self.b, "mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_json(cls, d: dict) -> "Probe":
        return cls(np.asarray(d["w"]), float(d["b"]), np.asarray(d["mean"]), np.asarray(d["scale"]))


def fit_probe(X, y, l2: float = 1.0, iters: int = 50) -> Probe:
    """L2-regularised logistic regression by Newton's method on standardised features.

    Args:
      X: (n, D) features of the audited examples. y: (n,) 0/1 audited labels (both classes present).
      l2: ridge penalty on the weights (not the bias), > 0 so the fit exists when the classes separate.
    """
    X, y = np.asarray(X, np.float64), np.asarray(y, np.float64)
    if X.ndim != 2 or y.shape != (len(X),):
        raise ValueError(f"X must be (n, D) and y (n,); got {X.shape} and {y.shape}")
    if not (y.min() == 0 and y.max() == 1 and np.isin(y, (0, 1)).all()):
        raise ValueError("y: the audited set must hold both classes, labelled 0 and 1")
    if not l2 > 0:
        raise ValueError(f"l2 must be > 0; got {l2!r}")
    mean, scale = X.mean(0), X.std(0) + 1e-8
    Z = np.concatenate([(X - mean) / scale, np.ones((len(X), 1))], 1)
    reg = np.full(Z.shape[1], l2)
    reg[-1] = 0.0
    theta = np.zeros(Z.shape[1])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-Z @ theta))
        g = Z.T @ (p - y) + reg * theta
        Hm = (Z * (p * (1 - p))[:, None]).T @ Z + np.diag(reg) + 1e-9 * np.eye(Z.shape[1])
        step = np.linalg.solve(Hm, g)
        theta -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return Probe(theta[:-1], float(theta[-1]), mean, scale)


def rates(flags, truth) -> tuple[float, float]:
    """(tau, phi): the fraction of true positives flagged and of true negatives flagged."""
    f, t = np.asarray(flags, bool), np.asarray(truth, bool)
    tau = float(f[t].mean()) if t.any() else float("nan")
    phi = float(f[~t].mean()) if (~t).any() else float("nan")
    return tau, phi
