"""The issue-4 primitives: directional channel, two-tilt closed forms vs simulation, tails, trilemma region.

Monte Carlo tolerances are stated per test (k standard errors of the estimate, or an absolute
tolerance derived from the sample size); sizes are small so the file runs in seconds.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from murphyjax import theory as T
from murphyjax.bandits import directional as D
from murphyjax.bandits import envs, tails, tiltsim, trilemma
from murphyjax.bandits.two_tilt import two_tilt_system

K, EPS, ALPHA = 64, 0.3, 0.125


@pytest.fixture(scope="module")
def env():
    return D.make_env(jax.random.key(0), K, 5, ALPHA, EPS)


@pytest.fixture(scope="module")
def proxy(env):
    k, y = D.sample_labels(jax.random.key(1), env, 8192)
    return D.fit_proxy(env, k, y)


# --------------------------------------------------------------------------- the channel
def test_channel_prefers_the_hacked_action_on_hard_contexts(env):
    h = np.asarray(env.hard)
    assert h.sum() == round(ALPHA * K) == 8  # exact hard count
    st = D.channel_stats(env)
    assert float(st["hacked_pref_hard"]) == pytest.approx(0.5 + EPS, abs=1e-12)
    assert float(st["truth_agree_hard"]) == pytest.approx(0.5 - EPS, abs=1e-12)  # the bias points at the bad action
    np.testing.assert_allclose(np.asarray(env.u1)[h > 0], 0.1)  # the hacked action is bad there
    np.testing.assert_allclose(np.asarray(env.u0)[h > 0], 0.9)
    easy = h == 0
    delta = np.asarray(env.u1 - env.u0)[easy]
    assert np.abs(delta).min() >= 0.5 - 1e-12  # easy margin
    np.testing.assert_allclose(np.asarray(env.p_label)[easy], 1 / (1 + np.exp(-1.2 * delta)), rtol=1e-12)
    # sampled labels: the rate on hard contexts is 1/2 + eps within 4 standard errors
    k, y = D.sample_labels(jax.random.key(2), env, 2**17)
    on_hard = np.asarray(env.hard)[np.asarray(k)] > 0
    rate, n = float(np.asarray(y)[on_hard].mean()), int(on_hard.sum())
    assert abs(n / 2**17 - ALPHA) < 4 * np.sqrt(ALPHA * (1 - ALPHA) / 2**17)
    assert abs(rate - (0.5 + EPS)) < 4 * np.sqrt(0.21 / n)


def test_variants_symmetric_varying_and_correlated():
    sym = D.make_env(jax.random.key(3), 512, 5, 0.25, EPS, direction="symmetric")
    st = D.channel_stats(sym)
    assert abs(float(st["hacked_pref_hard"]) - 0.5) < 0.1  # random direction per context: about 1/2 on average
    assert np.allclose(np.abs(np.asarray(sym.p_label - 0.5))[np.asarray(sym.hard) > 0], EPS)
    var = D.make_env(jax.random.key(3), 512, 5, 0.25, 0.2, spread=0.5)
    e = np.asarray(var.eps_x)[np.asarray(var.hard) > 0]
    assert e.min() > 0.1 - 1e-12 and e.max() < 0.3 and e.std() > 0.01  # eps (1 + 0.5 tanh(.)) in (0.1, 0.3)
    cor = D.make_env(jax.random.key(3), 512, 5, 0.25, EPS, hard_corr=3.0)
    theta = np.asarray(cor.x)[:, 0]
    assert theta[np.asarray(cor.hard) > 0].mean() > theta[np.asarray(cor.hard) == 0].mean() + 0.5  # hard where theta is high


def test_population_proxy_is_the_channel_logit(env):
    np.testing.assert_allclose(np.asarray(D.population_proxy(env)), np.asarray(D.channel_logit(env)), atol=2e-3)


@pytest.mark.parametrize("kw, needle", [(dict(eps=0.5), "eps"), (dict(eps=0.3, spread=0.8), "eps (1 + spread)"),
                                        (dict(alpha=0.001), "alpha * n_contexts"), (dict(direction="up"), "direction"),
                                        (dict(u_hack=0.7), "u_hack"), (dict(d=2), "d must")])
def test_make_env_bad_values(kw, needle):
    args = dict(n_contexts=64, d=5, alpha=0.1, eps=0.2) | kw
    with pytest.raises(ValueError, match=None) as e:
        D.make_env(jax.random.key(0), **args)
    assert needle in str(e.value) and "\n" not in str(e.value)


# --------------------------------------------------------------------------- two tilts: exact vs autodiff vs simulation
LAMS = np.linspace(0.0, 4.0, 17)


def test_two_tilt_derivatives_match_autodiff(env, proxy):
    lmu = jnp.log(env.mu)
    for context in (True, False):
        f = lambda lam, k: two_tilt_system(lmu, proxy, env.hard, env.u0, env.u1, lam, context=context)[k][0]
        ex = two_tilt_system(lmu, proxy, env.hard, env.u0, env.u1, jnp.asarray([1.3]), context=context)
        for k in ("gap", "hacked", "value"):
            assert float(ex["d" + k][0]) == pytest.approx(float(jax.grad(f)(1.3, k)), rel=1e-9, abs=1e-12)
    # two implementations: the v1 gap of theory.alignment_gap and B.4's value of theory.overoptimization
    pol = two_tilt_system(lmu, proxy, env.hard, env.u0, env.u1, LAMS, context=False)
    g = T.alignment_gap(jnp.full((K, 2), jnp.log(0.5)), D.proxy_rewards(proxy), D.true_rewards(env), LAMS, env.mu)
    np.testing.assert_allclose(np.asarray(pol["gap"]), np.asarray(g["gap"]), atol=1e-12)
    np.testing.assert_allclose(np.asarray(pol["dgap"]), np.asarray(g["slope"]), atol=1e-12)
    ctx = two_tilt_system(lmu, proxy, env.hard, env.u0, env.u1, LAMS, context=True)
    oo = T.overoptimization(lmu, proxy, env.hard, env.u0, env.u1, LAMS)
    np.testing.assert_allclose(np.asarray(ctx["value"]), np.asarray(oo["value"]), atol=1e-12)
    np.testing.assert_allclose(np.asarray(ctx["dvalue"]), np.asarray(oo["derivative"]), atol=1e-10)


def test_closed_forms_match_the_simulation(env, proxy):
    """tiltsim draws 2^16 (context, action) pairs per lambda: every mean within 5 standard errors
    (a [0, 1]-valued or [-1, 1]-valued mean has SE <= 1/sqrt(N) = 0.0039)."""
    lmu, n = jnp.log(env.mu), 2**16
    tol = 5 / np.sqrt(n)
    for context in (True, False):
        ex = two_tilt_system(lmu, proxy, env.hard, env.u0, env.u1, LAMS, context=context)
        m = tiltsim.simulate(jax.random.key(4), lmu, proxy, proxy, env.hard, env.u0, env.u1, jnp.asarray(LAMS), n_samples=n, context=context)
        for k in ("gap", "hacked", "value", "rho"):
            np.testing.assert_allclose(np.asarray(m[k]), np.asarray(ex[k]), atol=tol * (1 + float(jnp.max(jnp.abs(proxy)))), err_msg=k)


def test_hard_mass_derivative_is_cov_h_s_and_measured_by_finite_differences(env, proxy):
    """Props 1-2: rho'(lam) = Cov_{q_lam}(H, s_hat), against central differences of the exact rho (1e-3
    grid: O(h^2) error) and of the simulated rho (common random numbers; tolerance 0.02)."""
    lmu = jnp.log(env.mu)
    cov = np.asarray(T.hard_mass_drift(lmu, proxy, env.hard, LAMS)["drift"])
    assert cov[0] == pytest.approx(float(T.drift_at_zero(env.mu, env.hard, proxy)), abs=1e-12)
    assert cov[0] > 0.05  # directional bias: the hard mass drifts up
    h = 1e-3
    rho = lambda lam: np.asarray(two_tilt_system(lmu, proxy, env.hard, env.u0, env.u1, lam, context=True)["rho"])
    np.testing.assert_allclose((rho(LAMS + h) - rho(np.maximum(LAMS - h, 0))) / (h + np.minimum(LAMS, h)), cov, atol=2e-4)
    m = tiltsim.simulate(jax.random.key(5), lmu, proxy, proxy, env.hard, env.u0, env.u1, jnp.asarray(LAMS), n_samples=2**16, context=True)
    lam_mid, d = tiltsim.central_difference(np.asarray(m["rho"]), LAMS)
    np.testing.assert_allclose(d, cov[1:-1], atol=0.02)


def test_b4_threshold_predicted_vs_observed(env, proxy):
    """The true value of (q_lam, pi_lam) turns down at the first zero of the exact derivative; the
    simulated curve (2^17 draws, common random numbers) turns down within two grid steps of it."""
    lams = np.linspace(0.0, 8.0, 33)
    lmu = jnp.log(env.mu)
    oo = T.overoptimization(lmu, proxy, env.hard, env.u0, env.u1, lams)
    pred = T.first_downturn(lams, np.asarray(oo["derivative"]))
    assert np.isfinite(pred) and 0 < pred < 8
    assert T.first_downturn(lams, np.asarray(oo["derivative_paper"])) == 0.0  # B.4 as written: a decrease from 0
    m = tiltsim.simulate(jax.random.key(6), lmu, proxy, proxy, env.hard, env.u0, env.u1, jnp.asarray(lams), n_samples=2**17, context=True)
    v = np.asarray(m["value"])
    obs = T.first_downturn(lams[1:-1], tiltsim.central_difference(v, lams)[1])
    assert abs(obs - pred) <= 2 * (lams[1] - lams[0])
    assert v[-1] < v.max() - 0.05  # and it really falls


def test_gap_slope_vs_closed_form(env, proxy):
    """The v1 gap slope E_mu Cov_pi(r_hat - U, r_hat) vs central differences of the simulated gap (tolerance 0.01)."""
    lmu = jnp.log(env.mu)
    g = T.alignment_gap(jnp.full((K, 2), jnp.log(0.5)), D.proxy_rewards(proxy), D.true_rewards(env), LAMS, env.mu)
    m = tiltsim.simulate(jax.random.key(7), lmu, proxy, proxy, env.hard, env.u0, env.u1, jnp.asarray(LAMS), n_samples=2**16, context=False)
    _, d = tiltsim.central_difference(np.asarray(m["gap"]), LAMS)
    np.testing.assert_allclose(d, np.asarray(g["slope"])[1:-1], atol=0.01)
    assert float(g["slope"][0]) > 0.02  # the gap grows under pressure


def test_maps_gap_is_measured_on_the_unshaped_proxy(env, proxy):
    """With a shaped t the reported gap is that of s_hat (s_eval): the temperature t = s/2 is the same system at lam/2."""
    lmu = jnp.log(env.mu)
    a = two_tilt_system(lmu, proxy / 2, env.hard, env.u0, env.u1, 2 * LAMS, s_eval=proxy)
    b = two_tilt_system(lmu, proxy, env.hard, env.u0, env.u1, LAMS)
    for k in ("gap", "value", "rho", "kl"):
        np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), atol=1e-12, err_msg=k)
    m = tiltsim.simulate(jax.random.key(8), lmu, proxy / 2, proxy, env.hard, env.u0, env.u1, jnp.asarray(2 * LAMS), n_samples=2**14, context=True)
    np.testing.assert_allclose(np.asarray(m["gap_s"]), np.asarray(a["gap"]), atol=5 * 2 / np.sqrt(2**14))


def test_central_difference_and_peak_are_exact_on_a_parabola():
    lams = np.array([0.0, 0.5, 1.5, 2.0, 3.5, 4.0])
    y = 1.0 + 2.0 * lams - 0.5 * lams**2
    mid, d = tiltsim.central_difference(y, lams)
    np.testing.assert_allclose(d, 2.0 - mid, atol=1e-12)
    assert tiltsim.peak(y, lams) == pytest.approx(2.0, abs=1e-12)
    assert np.isnan(tiltsim.peak(lams, lams))  # still rising at the right end


# --------------------------------------------------------------------------- tails and the trilemma
def test_heavy_tailed_error_does_not_improve_true_utility_but_light_does():
    """BoN on 4096 arms, 4 seeds, n up to 1024 (sizes measured: light gains ~2.4 and rising, heavy peaks ~0.6 then falls)."""
    ns = 2 ** np.arange(11)
    gains = {}
    for err in tails.ERRORS:
        g = []
        for s in range(4):
            U, P = tails.tail_bandit(jax.random.key(s), 4096, err, df=1.5)
            c = tails.bon_curve(U, P, ns)
            g.append(c["true"] - c["true"][0])
            assert np.all(np.diff(c["proxy"]) > -1e-9) and np.all(np.diff(c["kl"]) > 0)  # proxy and KL rise with n
        gains[err] = np.mean(g, 0)
    light, heavy = gains["normal"], gains["student_t"]
    assert np.all(np.diff(light) > 0) and light[-1] > 1.5
    assert heavy[-1] < 0.25 * light[-1] and heavy[-1] < heavy.max() - 0.2  # falls back under more pressure
    # Kwa et al.: E[U | U + X >= t] -> 0 for the heavy tail, grows for the light one
    ct = np.asarray(T.conditional_true_mean(jnp.asarray([5.0, 50.0]), "student_t", df=1.5))
    assert ct[1] < ct[0] and ct[1] < 0.05
    assert float(T.conditional_true_mean(jnp.asarray(5.0), "normal")) > 2.0


def test_trilemma_region_respects_eq1_and_the_tight_environment_attains_twice_the_bound():
    env = envs.random_three_objective(jax.random.key(0), 30, 0.1, 0.2)
    Rw = trilemma.regret_table(env)
    pts = np.concatenate([trilemma.policy_regrets(Rw, trilemma.random_policies(1, 30, 500, det)) for det in (True, False)])
    paper = float(T.multiobjective_bound(env.g, env.mu, env.S, constant="paper")["bound"])
    proof = float(T.multiobjective_bound(env.g, env.mu, env.S, constant="proof")["bound"])
    best = trilemma.min_sum_regret(Rw)
    assert pts.sum(1).min() >= best - 1e-12 >= proof - 1e-12 and proof == pytest.approx(2 * paper)
    sup = trilemma.support_points(Rw, trilemma.simplex_grid(6))
    assert sup.shape == (28, 3) and sup.sum(1).min() == pytest.approx(best, abs=1e-12)  # w = (1,1,1)/3 is on the grid
    mm = trilemma.min_max_regret(Rw)
    assert best / 3 - 1e-9 <= mm <= pts.max(1).min() + 1e-12
    tight = trilemma.tight_three_objective(30, 0.1, 0.2)
    assert trilemma.min_sum_regret(trilemma.regret_table(tight)) == pytest.approx(2 * 0.1 * 0.2, abs=1e-12)
    assert float(T.multiobjective_bound(tight.g, tight.mu, tight.S, constant="proof")["bound"]) == pytest.approx(0.04, abs=1e-12)
