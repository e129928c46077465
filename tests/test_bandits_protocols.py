"""Query protocols: Lemma 2, Theorem 1 for every protocol, Theorem 2's Hoeffding bound, exact errors.

Monte Carlo tolerances are stated at each assertion (binomial sd of the pooled transcripts).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import binom

from murphyjax import theory as T
from murphyjax.bandits import exact, protocols

F32 = jnp.float32
GRID = (16, 64, 256, 1024)
ALPHA, EPS, MU_NORM = 0.1, 0.2, 3.0
REPS = 4000
SYNTH = (0.7, 0.05)


@functools.partial(jax.jit, static_argnums=(1,))
def _simulate(key, reps):
    """REPS transcripts of every protocol in both worlds; returns mean fields (2, len(GRID))."""
    n = GRID[-1]
    logit = np.log(ALPHA / (1 - ALPHA))

    def one(k):
        k1, k2, k3, k4 = jax.random.split(k, 4)
        z = (jax.random.uniform(k1, (n,), F32) < ALPHA).astype(F32)
        s = jax.random.normal(k2, (n,), F32) * MU_NORM + z * MU_NORM**2
        ph = jax.nn.sigmoid(s - 0.5 * MU_NORM**2 + logit)
        u = jax.random.uniform(k3, (n,), F32)
        flag = jnp.where(z > 0, jax.random.uniform(k4, (n,)) < SYNTH[0], jax.random.uniform(k4, (n,)) < SYNTH[1]).astype(F32)

        def world(w):
            v = protocols.votes(u, z, w, EPS)
            r = {"majority_all": protocols.majority_all(v, ph, EPS, GRID, w),
                 "bayes_lr": protocols.bayes_lr(v, ph, EPS, GRID, w),
                 "active_lr": protocols.active_lr(v, ph, EPS, float(np.log(19.0)), GRID, w),
                 "oracle": protocols.routed_majority(v, z, z, EPS, GRID, w),
                 "flag_synth": protocols.routed_majority(v, z, flag, EPS, GRID, w),
                 "sprt": protocols.sprt(v, z, EPS, 0.05, GRID, w),
                 "abstain": protocols.abstain(v, z, EPS, 0.45, 0.1, GRID, w)}
            return {f"{p}.{f}": x.astype(F32) for p, d in r.items() for f, x in d.items() if f != "stop"}

        return jax.vmap(world)(jnp.array([1.0, -1.0], F32))

    out = jax.lax.map(one, jax.random.split(key, reps), batch_size=500)
    return {k: v.mean(0) for k, v in out.items()}


@pytest.fixture(scope="module")
def sim():
    return {k: np.asarray(v) for k, v in _simulate(jax.random.key(0), REPS).items()}


PROTOCOLS = ("majority_all", "bayes_lr", "active_lr", "oracle", "flag_synth", "sprt", "abstain")


@pytest.mark.parametrize("p", PROTOCOLS)
def test_lower_bound_holds_for_every_protocol_at_every_n(sim, p):
    """Theorem 1 / Prop. 5: max_w P_w(w_hat != w) >= exp(-n alpha kappa)/4, with 4 MC sd slack."""
    err = sim[f"{p}.err"].max(axis=0)
    lb = np.asarray(T.sign_error_lower_bound(np.array(GRID), ALPHA, EPS))
    sd = np.sqrt(0.25 / REPS)
    assert np.all(err >= lb - 4 * sd), (err, lb)


@pytest.mark.parametrize("p", PROTOCOLS)
def test_lemma2_expected_hits_and_transcript_kl(sim, p):
    """Lemma 2: E[queried hits] <= n alpha; chain rule: transcript KL <= n alpha kappa (4 MC sd)."""
    n = np.array(GRID, float)
    sd_hits = np.sqrt(n * ALPHA / REPS)
    assert np.all(sim[f"{p}.hits"][0] <= n * ALPHA + 4 * sd_hits)
    kap = float(T.kappa(EPS))
    assert np.all(sim[f"{p}.kl"][0] <= n * ALPHA * kap + 4 * kap * sd_hits)
    # the realised LLR has the transcript KL as its mean under P^+
    llr_sd = 2 * np.arctanh(2 * EPS) * np.sqrt(n * ALPHA / REPS)
    assert np.all(np.abs(sim[f"{p}.llr"][0] - sim[f"{p}.kl"][0]) <= 5 * llr_sd + 1e-6)


def test_oracle_attains_the_kl_bound_and_counts_draws_and_labels_separately(sim):
    n = np.array(GRID, float)
    kap = float(T.kappa(EPS))
    np.testing.assert_allclose(sim["oracle.kl"][0], sim["oracle.hits"][0] * kap, rtol=1e-5)  # kappa per hit
    np.testing.assert_allclose(sim["oracle.hits"][0], n * ALPHA, atol=4 * np.sqrt(n.max() * ALPHA / REPS))
    np.testing.assert_array_equal(sim["oracle.draws"][0], n)
    np.testing.assert_allclose(sim["oracle.labels"], sim["oracle.hits"])
    np.testing.assert_array_equal(sim["majority_all.labels"][0], n)  # query-everything labels every draw


@pytest.mark.parametrize("p,tau,phi", [("majority_all", 1.0, 1.0), ("oracle", 1.0, 0.0), ("flag_synth", *SYNTH)])
def test_simulated_error_equals_exact_binomial_mixture(sim, p, tau, phi):
    ex = exact.routed_majority_error(np.array(GRID), ALPHA, EPS, tau, phi)
    for w in range(2):
        assert np.all(np.abs(sim[f"{p}.err"][w] - ex) <= 4 * np.sqrt(0.25 / REPS)), (p, sim[f"{p}.err"][w], ex)


def test_oracle_error_below_hoeffding_given_T_hits():
    """Theorem 2 / A.5: T hits (every draw hard) -> P(w_hat != w) <= exp(-2 T eps^2)."""
    T_ = np.array([4, 16, 64, 256])
    reps = 20000
    u = jax.random.uniform(jax.random.key(1), (reps, 256), F32)
    z = jnp.ones((256,), F32)
    err = jax.vmap(lambda uu: protocols.routed_majority(protocols.votes(uu, z, 1.0, 0.1), z, z, 0.1, tuple(T_), 1.0)["err"])(u)
    emp = np.asarray(err.mean(0))
    bound = np.asarray(T.majority_error_bound(T_, 0.1))
    assert np.all(emp <= bound)
    np.testing.assert_allclose(emp, np.asarray(T.majority_error(T_, 0.6)), atol=4 * np.sqrt(0.25 / reps))


def test_sprt_matches_gamblers_ruin(sim):
    """B.5: with a budget large enough to stop, the SPRT's error and hits match theory.sprt_exact."""
    sx = T.sprt_exact(EPS, 0.05)
    assert sim["sprt.stopped"][:, -1].min() > 0.999
    assert sim["sprt.err"][:, -1].max() == pytest.approx(float(sx["error"]), abs=4 * np.sqrt(0.05 / REPS))
    # hits used ~ expected_hits (sd of the stopping time <= ~k^2: generous 5 sd bound)
    assert sim["sprt.labels"][0, -1] == pytest.approx(float(sx["expected_hits"]), rel=0.08)
    # Wald's B.5 formula (no overshoot) is below the exact count here
    assert float(T.sprt_expected_hits_paper(EPS, 0.05)) < float(sx["expected_hits"])


def test_abstention_escalates_until_the_band_is_left(sim):
    # band 0.45: stop when |LLR| > 2 atanh(0.9) = 2.944; per label 2 atanh(0.4) = 0.847 -> 4 net labels
    assert sim["abstain.stopped"][0, -1] > 0.99
    assert sim["abstain.escalation_cost"][0, -1] == pytest.approx(0.1 * sim["abstain.labels"][0, -1])
    assert sim["abstain.wrong_acts"][0, -1] <= sim["abstain.hard_rounds"][0, -1]


def test_bayes_lr_beats_majority_and_oracle_beats_bayes_lr(sim):
    """Information ordering: knowing z (oracle) >= knowing x (Bayes LR) >= ignoring x (majority)."""
    e = {p: sim[f"{p}.err"].max(0)[-1] for p in ("oracle", "bayes_lr", "majority_all")}
    assert e["oracle"] <= e["bayes_lr"] + 0.02 and e["bayes_lr"] < e["majority_all"]


def test_exact_majority_window_and_routed_error_against_enumeration():
    k = np.arange(0, 200.0)
    np.testing.assert_allclose(exact.majority_error_window(np.array(0.0), 200, 0.57), exact.majority_error_k(k, 0.57), atol=1e-14)
    np.testing.assert_allclose(exact.majority_error_k(k[:40], 0.57), np.asarray(T.majority_error(k[:40], 0.57)), atol=1e-13)
    # trinomial enumeration: S = A - B, (A, B, rest) multinomial(n; q p, q (1 - p), 1 - q)
    n, a, e, tau, phi = 30, 0.2, 0.15, 0.6, 0.1
    q = a * tau + (1 - a) * phi
    p = float(T.diluted_vote_accuracy(a, e, tau, phi))
    brute = 0.0
    for K in range(n + 1):
        for A_ in range(K + 1):
            pr = binom.pmf(K, n, q) * binom.pmf(A_, K, p)
            brute += pr * (1.0 if 2 * A_ < K else 0.5 if 2 * A_ == K else 0.0)
    assert float(exact.routed_majority_error(n, a, e, tau, phi)) == pytest.approx(brute, rel=1e-12)


def test_draws_to_reach_is_minimal_and_below_hoeffding():
    n = exact.draws_to_reach(0.01, 0.05, 0.1)
    assert exact.routed_majority_error(n, 0.05, 0.1) <= 0.01 < exact.routed_majority_error(n - 1, 0.05, 0.1)
    assert n < float(T.oracle_queries(0.05, 0.1, 1.0, 0.01))  # Hoeffding is conservative
    # a flagger with tau < 1 needs more draws than the oracle; Theorem 3's T/(alpha tau) scaling
    n_flag = exact.draws_to_reach(0.01, 0.05, 0.1, 0.5, 0.0)
    assert n_flag == pytest.approx(2 * n, rel=0.05)
