"""Feedback channels: per-hit KL = kappa(eps), reference action, ratings, heterogeneity, drift."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad

from murphyjax import theory as T
from murphyjax.bandits import channels

F32 = jnp.float32


@pytest.mark.parametrize("eps", [0.01, 0.05, 0.1, 0.3, 0.45])
def test_per_hit_kl_is_kappa(eps):
    p_plus = channels.massart_p(1.0, 1.0, eps)
    p_minus = channels.massart_p(1.0, -1.0, eps)
    assert float(channels.label_kl(p_plus, p_minus)) == pytest.approx(float(T.kappa(eps)), rel=1e-12)
    # easy contexts carry no information: both worlds share the label law
    assert float(channels.label_kl(channels.massart_p(0.0, 1.0, eps, 0.3), channels.massart_p(0.0, -1.0, eps, 0.3))) == 0.0


def test_per_hit_kl_monte_carlo_llr():
    eps, n = 0.1, 2_000_000
    u = jax.random.uniform(jax.random.key(0), (n,), F32)
    Z = channels.bernoulli(u, channels.massart_p(1.0, 1.0, eps))
    llr = channels.label_llr(Z, 0.5 + eps, 0.5 - eps)
    assert abs(float(llr.mean()) - 0.081093) < 5 * float(llr.std()) / np.sqrt(n)


def test_reference_action_makes_worlds_distinguishable():
    """Note 9.1: relative to pi^+ the worlds differ; relative to the 'truly better' action they do not."""
    eps = 0.1
    fav_ref = [float(channels.massart_p(1.0, w, eps)) for w in (1.0, -1.0)]
    assert fav_ref == pytest.approx([0.6, 0.4])
    # P(label favours the world's own best action): pi^+ under w=+, pi^- under w=- -> identical laws
    fav_truly_better = [fav_ref[0], 1 - fav_ref[1]]
    assert fav_truly_better == pytest.approx([0.6, 0.6])
    assert float(channels.labels_for_action(0.6, False)) == pytest.approx(0.4)


@pytest.mark.parametrize("c", [0.1, 0.35, 0.8])
def test_rating_kl_closed_form_and_sampler(c):
    f = lambda r, w: 1 + w * c * (2 * r - 1)
    kl_quad = quad(lambda r: f(r, 1) * np.log(f(r, 1) / f(r, -1)), 0, 1)[0]
    assert float(channels.rating_kl(c)) == pytest.approx(kl_quad, rel=1e-9)
    R = channels.rating_sample(jax.random.key(1), 1.0, c, (400_000,))
    assert float(R.min()) >= 0 and float(R.max()) <= 1
    assert float(R.mean()) == pytest.approx(0.5 + c / 6, abs=5 * 0.29 / np.sqrt(4e5))  # E_w[R] = 1/2 + w c/6
    llr = channels.rating_llr(R, c)
    assert float(jnp.abs(llr).max()) <= 2 * np.arctanh(c) + 1e-5  # bounded LLR
    assert float(llr.mean()) == pytest.approx(kl_quad, abs=5 * float(llr.std()) / np.sqrt(4e5))


def test_rating_kl_small_c_and_b8_erratum():
    c = 0.01
    assert float(channels.rating_kl(c)) == pytest.approx(2 * c**2 / 3, rel=1e-3)
    # B.8 writes the per-hit KL as m^2 / (2 sigma^2); with m the mean LLR (= KL) and sigma^2 its
    # variance this is ~ m/4 for small c, not m (paper note 9.11)
    R = channels.rating_sample(jax.random.key(2), 1.0, 0.2, (400_000,))
    llr = np.asarray(channels.rating_llr(R, 0.2), np.float64)
    m, var = float(channels.rating_kl(0.2)), llr.var()
    assert m**2 / (2 * var) == pytest.approx(m / 4, rel=0.05)


def test_heterogeneous_and_drift():
    e = channels.heterogeneous_eps(0.1, 0.5, jnp.array([-100.0, 0.0, 100.0]))
    np.testing.assert_allclose(np.asarray(e), [0.05, 0.1, 0.15], rtol=1e-6)
    with pytest.raises(ValueError, match="below 1/2"):
        channels.validate_heterogeneous(0.3, 0.9)
    with pytest.raises(ValueError, match="spread"):
        channels.validate_heterogeneous(0.1, 1.5)
    d = channels.drift_eps(0.1, 0.02, jnp.arange(5), 5)
    np.testing.assert_allclose(np.asarray(d), [0.1, 0.08, 0.06, 0.04, 0.02], rtol=1e-6)
    with pytest.raises(ValueError, match="eps_end"):
        channels.validate_drift(0.1, 0.5)
    # Proposition 7: the heterogeneous exponent is the average per-hit KL
    K = T.heterogeneous_kappa(e)
    assert float(K) == pytest.approx(float(jnp.mean(T.kappa(e))))
