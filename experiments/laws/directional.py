"""The laws where they bind: the directional-bias bandit along both tilts, predicted vs measured.

For every seed a directional bandit is drawn (``bandits.directional``), a proxy is learned from
n biased labels, and along the lambda grid

* *predicted*: the closed forms of ``murphyjax.theory`` (Props 1-3, 6, B.4, B.10, the v1 gap)
  and ``bandits.two_tilt``, evaluated exactly on the learned proxy s_hat ("learned") and on the
  proxy's population limit s_inf ("population": what the theory predicts before any data);
* *measured*: the same quantities simulated (``bandits.tiltsim``: contexts drawn from q_lambda,
  actions from pi_lambda, averaged), derivatives by central differences.

Two paths (paper note 9.13): ``context`` (q_lambda and pi_lambda together: the system of B.4) and
``policy`` (pi_lambda ∝ pi_0 exp(lambda r_hat) with contexts from mu: the v1 Alignment Gap).
MAPS interventions (App. D) reshape the optimised score t on the context path (``maps_scores``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from murphyjax import theory as T
from murphyjax.bandits import directional as D
from murphyjax.bandits import tiltsim
from murphyjax.bandits.two_tilt import two_tilt_system
from murphyjax.experiments.laws.config import VARIANTS, LawsConfig


def variant_params(cfg: LawsConfig, variant: str) -> tuple:
    """(spread, hard_corr, symmetric) of one variant: hacked (constant eps), symmetric (bias toward a
    random action per hard context), varying (eps(x), B.1) or correlated (proxy-correlated hardness)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
    return (cfg.spread if variant == "varying" else 0.0, cfg.hard_corr if variant == "correlated" else 0.0, float(variant == "symmetric"))


def variant_env(key, cfg: LawsConfig, variant: str):
    """The directional bandit of one variant (validated; see ``variant_params``)."""
    spread, corr, sym = variant_params(cfg, variant)
    return D.make_env(key, cfg.n_contexts, cfg.d, cfg.alpha, cfg.eps, spread=spread, hard_corr=corr,
                      direction="symmetric" if sym else "hacked", sharpness=cfg.sharpness, easy_margin=cfg.easy_margin,
                      u_hack=cfg.u_hack, hard_shift=cfg.hard_shift)


def seed_key(cfg: LawsConfig, part: str, variant: str, seed: int):
    """The PRNG key of one (part, variant, seed): independent streams per part, identical for a variant whichever others run."""
    k = jax.random.key(cfg.seed)
    for v in (sum(map(ord, part)) * 131 + len(part), VARIANTS.index(variant) if variant in VARIANTS else 99, seed):
        k = jax.random.fold_in(k, v)
    return k


def learn(key, cfg: LawsConfig, env):
    """(learned proxy s_hat, population proxy s_inf), both (K,) float64 in utility units."""
    k, y = D.sample_labels(key, env, cfg.n_labels)
    s = D.fit_proxy(env, k, y, context_sd=cfg.context_sd, ridge=cfg.ridge)
    return s, D.population_proxy(env, context_sd=cfg.context_sd, ridge=cfg.ridge)


@functools.partial(jax.jit, static_argnums=(2,))
def _envs_and_proxies(k_env, k_lab, cfg: LawsConfig, params):
    """vmap over seeds: the bandits and their learned and population proxies in one compiled call
    (the variant's parameters are traced, so every variant shares the compilation)."""
    k_h = D.validate(cfg.n_contexts, cfg.d, cfg.alpha, cfg.eps, spread=cfg.spread, hard_corr=cfg.hard_corr, u_hack=cfg.u_hack,
                     sharpness=cfg.sharpness, easy_margin=cfg.easy_margin, hard_shift=cfg.hard_shift)
    draw = lambda k: D.draw_env(k, cfg.n_contexts, cfg.d, k_h, cfg.eps, *params[:2], params[2], cfg.hard_shift, cfg.u_hack,
                                cfg.sharpness, cfg.easy_margin)
    env = jax.vmap(draw)(k_env)
    s, s_inf = jax.vmap(lambda k, e: learn(k, cfg, e))(k_lab, env)
    return env, s, s_inf


def seeds_setup(cfg: LawsConfig, part: str, variant: str):
    """(envs, s_hat, s_inf, per-seed keys) for every seed of one part and variant (envs as a list)."""
    keys = [jax.random.split(seed_key(cfg, part, variant, i), 4) for i in range(cfg.seeds)]
    ks = lambda j: jnp.stack([k[j] for k in keys])
    params = jnp.asarray(variant_params(cfg, variant), jnp.float64)
    env, s, s_inf = _envs_and_proxies(ks(0), ks(1), cfg, params)
    envs = [D.DirectionalEnv(*(f[i] for f in env)) for i in range(cfg.seeds)]
    return envs, s, s_inf, keys


def exact_path(env, t, s_greedy, lams, context: bool) -> dict:
    """Every closed form along one path for the optimised score t (float64 NumPy arrays of shape (L,))."""
    lmu = jnp.log(env.mu)
    sys = two_tilt_system(lmu, t, env.hard, env.u0, env.u1, lams, context=context)
    out = {k: np.asarray(v) for k, v in sys.items()}
    if context:
        dr = T.hard_mass_drift(lmu, t, env.hard, lams)  # Props 1-2
        oo = T.overoptimization(lmu, t, env.hard, env.u0, env.u1, lams)  # B.4
        greedy = s_greedy >= 0
        pv, tv = 0.5 * (1 + jnp.abs(s_greedy)), jnp.where(greedy, env.u1, env.u0)
        dpv = T.proxy_true_divergence(lmu, t, pv, tv, lams)  # Prop 6 / B.10
        out.update(drift=np.asarray(dr["drift"]), value_b4=np.asarray(oo["value"]), dvalue_b4=np.asarray(oo["derivative"]),
                   dvalue_paper=np.asarray(oo["derivative_paper"]), dpv=np.asarray(dpv["gap"]), dpv_slope=np.asarray(dpv["slope"]))
    else:
        log_pi0 = jnp.full(env.hard.shape + (2,), jnp.log(0.5))
        g = T.alignment_gap(log_pi0, D.proxy_rewards(t), D.true_rewards(env), lams, env.mu)  # the v1 gap
        out.update(gap_v1=np.asarray(g["gap"]), slope_v1=np.asarray(g["slope"]), true_v1=np.asarray(g["true_mean"]),
                   true_slope_v1=np.asarray(g["true_slope"]), kl_v1=np.asarray(g["kl"]))
        pk = T.true_utility_peak(log_pi0, D.proxy_rewards(t), D.true_rewards(env), env.mu, beta_max=1e3)
        out["peak_v1"] = np.asarray(pk["beta"] if pk["found"] else np.nan)
    return out


def measured_path(key, cfg, env, t, s_greedy, lams, context: bool) -> dict:
    """The simulated quantities (``tiltsim.simulate``) along the lambda grid for the optimised score t, float64 NumPy arrays."""
    m = tiltsim.simulate(key, jnp.log(env.mu), t, s_greedy, env.hard, env.u0, env.u1, jnp.asarray(lams),
                         n_samples=cfg.mc_samples, context=context)
    return {k: np.asarray(v, np.float64) for k, v in m.items()}


def one_seed(cfg: LawsConfig, env, s, s_inf, k_mc) -> dict:
    """All predicted and measured curves of one (variant, seed) given its bandit and proxies."""
    lams = cfg.lams
    out = {f"stat.{k}": np.asarray(v) for k, v in D.channel_stats(env).items()}
    for name, sc in (("learned", s), ("population", s_inf)):
        out[f"cov0.{name}"] = np.asarray(T.drift_at_zero(env.mu, env.hard, sc))
    for path, ctx in (("context", True), ("policy", False)):
        for name, sc in (("learned", s), ("population", s_inf)):
            out.update({f"{path}.{name}.{k}": v for k, v in exact_path(env, sc, sc, lams, ctx).items()})
        out.update({f"{path}.measured.{k}": v for k, v in measured_path(jax.random.fold_in(k_mc, ctx), cfg, env, s, s, lams, ctx).items()})
    return out


def run_directional(cfg: LawsConfig, variants=None, progress=None) -> dict:
    """{variant: {key: array (seeds, ...)}} for every variant (default: cfg.variants)."""
    res = {}
    for v in variants or cfg.variants:
        envs, s, s_inf, keys = seeds_setup(cfg, "directional", v)
        per = [one_seed(cfg, envs[i], s[i], s_inf[i], keys[i][2]) for i in range(cfg.seeds)]
        res[v] = {k: np.stack([p[k] for p in per]) for k in per[0]}
        if progress:
            progress(f"directional {v}")
    return res


# --------------------------------------------------------------------------- MAPS (App. D)
def maps_scores(cfg: LawsConfig, env, s, key) -> dict:
    """The shaped scores t of each MAPS intervention, with the flagger rates they used.

    * ``none``: t = s.
    * ``penalty_oracle``: t = s - beta* H, beta* = Cov_mu(H, s) / (alpha (1 - alpha)) (D.3, tau = 1, phi = 0).
    * ``penalty_learned``: t = s - beta* h_hat with a flagger learned on an audit set (Section 5.1,
      B.7 keep rate keep_factor alpha) and beta* = Cov_mu(H, s) / (alpha (1 - alpha)(tau - phi)) at its
      exact (tau, phi) (D.3; Cov_mu(H, s) is what an audit set estimates).
    * ``project_oracle``: t = s - (Cov(H, s) / Var(H)) H (D.4 with the oracle H).
    * ``project_learned``: t = s - (Cov(h_hat, s) / Var(h_hat)) h_hat (D.4 with the flagger: observable).
    * ``temperature``: t = s / temperature (D.5).
    * ``penalty_uninformative``: a flagger independent of H (tau = phi = keep rate) with the oracle's
      beta*: D.3's "if tau = phi no beta helps" and D.6.
    """
    mu, h = env.mu, env.hard
    a = float(jnp.sum(mu * h))
    cov_hs = T.drift_at_zero(mu, h, s)
    k1, k2 = jax.random.split(key)
    fl, (tau, phi) = D.learned_flagger(k1, env, cfg.audit_size, cfg.keep_factor * cfg.alpha, ridge=cfg.ridge)
    keep = cfg.keep_factor * cfg.alpha
    unin, (tu, pu) = D.flagger(k2, env, keep, keep)
    b_or = T.flagger_beta_star(cov_hs, a, 1.0, 0.0)
    out = {
        "none": (s, 1.0, 0.0, 0.0),
        "penalty_oracle": (T.shaped_score(s, penalties=(h,), betas=(b_or,)), 1.0, 0.0, float(b_or)),
        "penalty_learned": (None, float(tau), float(phi), float(T.flagger_beta_star(cov_hs, a, tau, phi))),
        "project_oracle": (T.project_out_hard(s, h, mu), 1.0, 0.0, float(T.drift_at_zero(mu, h, s) / (a * (1 - a)))),
        "project_learned": (None, float(tau), float(phi), float(T.drift_at_zero(mu, fl, s) / T.drift_at_zero(mu, fl, fl))),
        "temperature": (s / cfg.temperature, 1.0, 0.0, 0.0),
        "penalty_uninformative": (s - b_or * unin, float(tu), float(pu), float(b_or)),
    }
    out["penalty_learned"] = (s - out["penalty_learned"][3] * fl,) + out["penalty_learned"][1:]
    out["project_learned"] = (T.project_out_hard(s, fl, mu),) + out["project_learned"][1:]
    return out


def flagger_sweep_scores(cfg: LawsConfig, env, s, key) -> dict:
    """Penalty at beta*(tau, phi) for synthetic flaggers on the (taus x phis) grid: {(tau, phi): (t, tau_real, phi_real, beta)}."""
    mu, h = env.mu, env.hard
    a = float(jnp.sum(mu * h))
    cov_hs = T.drift_at_zero(mu, h, s)
    out = {}
    for i, tau in enumerate(cfg.taus):
        for j, phi in enumerate(cfg.phis):
            f, (tr, pr) = D.flagger(jax.random.fold_in(key, 100 * i + j), env, tau, phi)
            if float(tr) <= float(pr):
                continue
            b = T.flagger_beta_star(cov_hs, a, tr, pr)
            out[(tau, phi)] = (s - b * f, float(tr), float(pr), float(b))
    return out


def maps_seed(cfg: LawsConfig, env, s, k_fl, k_mc) -> dict:
    """Exact curves (and measured gap, hard mass and value) for every MAPS score of one seed.

    The system (q^t_lam, pi^t_lam) is driven by the shaped t; the gap reported is that of the
    unshaped learned proxy r_hat = (1 +- s_hat)/2 (what the reward model says minus the truth), so
    interventions are compared on one yardstick (with r_t, temperature would shrink the gap just
    by shrinking the proxy's scale)."""
    lams = cfg.lams
    out = {}
    lmu = jnp.log(env.mu)
    for name, (t, tau, phi, beta) in maps_scores(cfg, env, s, k_fl).items():
        ex = two_tilt_system(lmu, t, env.hard, env.u0, env.u1, lams, context=True, s_eval=s)
        out.update({f"{name}.{k}": np.asarray(v) for k, v in ex.items()})
        out[f"{name}.drift"] = np.asarray(T.residual_drift(lmu, env.hard, t, lams))
        out[f"{name}.tau"], out[f"{name}.phi"], out[f"{name}.beta"] = tau, phi, beta
        out[f"{name}.cov0"] = float(T.drift_at_zero(env.mu, env.hard, t))
        m = measured_path(jax.random.fold_in(k_mc, len(out)), cfg, env, t, s, lams, True)
        out[f"{name}.measured_gap"], out[f"{name}.measured_rho"] = m["gap_s"], m["rho"]
        out[f"{name}.measured_value"] = m["value"]
    for (tau, phi), (t, tr, pr, b) in flagger_sweep_scores(cfg, env, s, jax.random.fold_in(k_fl, 7)).items():
        ex = two_tilt_system(lmu, t, env.hard, env.u0, env.u1, lams, context=True, s_eval=s)
        key = f"sweep.{tau}.{phi}"
        out.update({f"{key}.{k}": np.asarray(v) for k, v in ex.items()})
        out[f"{key}.drift"] = np.asarray(T.residual_drift(lmu, env.hard, t, lams))
        out[f"{key}.cov0"], out[f"{key}.tau"], out[f"{key}.phi"], out[f"{key}.beta"] = float(T.drift_at_zero(env.mu, env.hard, t)), tr, pr, b
    return out


def run_maps(cfg: LawsConfig, progress=None) -> dict:
    """Every MAPS intervention (App. D) and the flagger sweep on the hacked-variant bandits: {key: array (seeds, ...)}."""
    envs, s, _, keys = seeds_setup(cfg, "maps", "hacked")
    per = [maps_seed(cfg, envs[i], s[i], keys[i][2], keys[i][3]) for i in range(cfg.seeds)]
    keys = set(per[0]).intersection(*[set(p) for p in per[1:]])
    if progress:
        progress("maps")
    return {k: np.stack([np.asarray(p[k], np.float64) for p in per]) for k in sorted(keys)}
