"""Reward-hacking onset monitor (murphyjax/monitor.py)."""

import json

import numpy as np
import pytest

import murphyjax.theory as T
from murphyjax.monitor import OnsetMonitor, hard_mass_drift_estimate, slope


def test_slope_and_drift_estimate():
    assert slope([0, 1, 2, 3], [1, 3, 5, 7]) == pytest.approx(2.0)
    rng = np.random.default_rng(0)
    h = rng.random(20000) < 0.3
    s = rng.normal(size=20000) + 0.5 * h
    cov, se = hard_mass_drift_estimate(h, s)
    assert abs(cov - 0.5 * 0.3 * 0.7) < 4 * se and se < 0.01
    with pytest.raises(ValueError, match="hard and score must be 1-D of equal length"):
        hard_mass_drift_estimate([1, 0], [0.1, 0.2])


def test_flags_the_turn_of_the_true_utility():
    events = []
    mon = OnsetMonitor(window=6, patience=3, on_event=events.append)
    fired = None
    for step in range(100):
        proxy = 0.05 * step
        true = min(step, 40) - 0.5 * max(step - 40, 0)  # rises, then falls after step 40
        ev = mon.update(step, proxy, true_utility=true)
        fired = fired or ev
    assert fired is not None and events == [fired]
    assert 40 <= fired["step"] <= 44 and fired["calibration"] == "true_utility"
    assert fired["proxy_slope"] > 0 and fired["true_slope"] < 0


def test_quiet_when_both_rise_and_resumable():
    mon = OnsetMonitor(window=5, patience=2)
    for step in range(30):
        assert mon.update(step, step * 1.0, true_utility=step * 0.5) is None
    state = json.loads(json.dumps(mon.state_dict()))
    mon2 = OnsetMonitor()
    mon2.load_state_dict(state)
    assert mon2.steps == mon.steps and mon2.window == 5


def test_on_an_exact_tilting_path_it_fires_at_the_true_peak():
    # proxy = E_q[r_hat] rises along the tilt; the true value turns down at a computable lam*
    y = np.linspace(-3, 3, 61)
    lp = -0.5 * y**2
    lp -= np.log(np.exp(lp).sum())
    u = -((y - 1.0) ** 2)
    peak = T.true_utility_peak(lp, y, u)["beta"]
    lams = np.linspace(0, 3 * peak, 121)
    g = T.alignment_gap(lp, y, u, lams)
    mon = OnsetMonitor(window=5, patience=2)
    ev = None
    for i, lam in enumerate(lams):
        ev = mon.update(i, float(g["proxy_mean"][i]), true_utility=float(g["true_mean"][i])) or ev
    dl = lams[1] - lams[0]
    assert ev is not None and abs(lams[ev["step"]] - peak) <= 3 * dl


def test_drift_mode_and_validation():
    mon = OnsetMonitor(window=3, patience=2, z=2.0)
    out = [mon.update(i, float(i), drift=0.1 if i > 5 else 0.0, drift_se=0.01) for i in range(12)]
    ev = [e for e in out if e][0]
    assert ev["step"] == 6 and ev["calibration"] == "hard_mass_drift"
    with pytest.raises(ValueError, match="exactly one calibration signal"):
        mon.update(13, 1.0)
    with pytest.raises(ValueError, match="window must be an integer >= 3"):
        OnsetMonitor(window=2)
