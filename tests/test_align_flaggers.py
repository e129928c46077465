"""The learned flagger: a logistic probe on an audited set, its measured (tau, phi), and the routing it drives."""

import numpy as np
import pytest
from scipy import optimize

from murphyjax.align import feedback, flaggers, tasks


def _mixture(n, shift, rng, D=6):
    y = rng.random(n) < 0.3
    X = rng.normal(size=(n, D)) + shift * y[:, None] * np.eye(D)[0]
    return X, y


def test_probe_is_the_minimiser_of_the_penalised_likelihood():
    rng = np.random.default_rng(0)
    X, y = _mixture(60, 1.0, rng)
    p = flaggers.fit_probe(X, y, l2=0.5)
    Z = (X - X.mean(0)) / (X.std(0) + 1e-8)

    def nll(t):  # the same objective, minimised independently (BFGS)
        z = Z @ t[:-1] + t[-1]
        return np.sum(np.logaddexp(0, z) - y * z) + 0.25 * t[:-1] @ t[:-1]
    ref = optimize.minimize(nll, np.zeros(X.shape[1] + 1), method="BFGS", options={"gtol": 1e-10}).x
    np.testing.assert_allclose(np.r_[p.w, p.b], ref, atol=1e-5)


def test_probe_separates_a_learnable_feature_and_not_noise():
    rng = np.random.default_rng(1)
    X, y = _mixture(40, 6.0, rng)
    Xt, yt = _mixture(2000, 6.0, rng)
    tau, phi = flaggers.rates(flaggers.fit_probe(X, y).predict(Xt), yt)
    assert tau > 0.95 and phi < 0.05
    Xn, yn = rng.normal(size=(40, 6)), rng.random(40) < 0.3  # labels unrelated to the features
    tau, phi = flaggers.rates(flaggers.fit_probe(Xn, yn).predict(rng.normal(size=(4000, 6))), rng.random(4000) < 0.3)
    assert abs(tau - phi) < 0.1  # no better than chance on held-out data


def test_probe_roundtrips_through_json():
    rng = np.random.default_rng(3)
    X, y = _mixture(30, 3.0, rng)
    p = flaggers.fit_probe(X, y)
    q = flaggers.Probe.from_json(__import__("json").loads(__import__("json").dumps(p.to_json())))
    np.testing.assert_array_equal(q.logit(X), p.logit(X))


def test_rates_and_bad_audit_sets():
    assert flaggers.rates([1, 0, 1, 0], [1, 1, 0, 0]) == (0.5, 0.5)
    assert flaggers.rates([1, 0, 1, 1], [1, 1, 0, 0]) == (0.5, 1.0)
    assert flaggers.rates([1, 1], [1, 1])[0] == 1.0 and np.isnan(flaggers.rates([1, 1], [1, 1])[1])
    with pytest.raises(ValueError, match="both classes"):
        flaggers.fit_probe(np.zeros((4, 2)), np.ones(4))
    with pytest.raises(ValueError, match="l2"):
        flaggers.fit_probe(np.zeros((4, 2)), np.array([0, 1, 0, 1]), l2=0.0)


def test_learned_routing_routes_exactly_the_flagged_pairs():
    cfg, fb = tasks.TaskConfig(), feedback.FeedbackConfig()
    c = tasks.candidate_pairs(cfg, 200, np.random.default_rng(0))
    flags = np.random.default_rng(1).random(200) < 0.4
    lab = feedback.label_pairs(cfg, fb, c, "route_learned", np.random.default_rng(2), routed=flags)
    assert np.array_equal(lab["routed"], flags)
    assert np.array_equal(lab["queries"], np.where(flags, fb.votes, 1))
    with pytest.raises(ValueError, match="routed"):
        feedback.label_pairs(cfg, fb, c, "route_learned", np.random.default_rng(2))
