"""The sections of the reproduction report: tables, figures and the findings read off them."""

from __future__ import annotations

import math
import os


from murphyjax import report_text
from murphyjax.experiments.lab import aggregate as agg
from murphyjax.experiments.lab import extras
from murphyjax.experiments.lab import figures
from murphyjax.experiments.lab import findings
from murphyjax.experiments.common.report import errata_block, table
from murphyjax.experiments.common.store import load_json, load_saved, save_json, source_hash


def build(cfg, rows, A, out, *, preset, config_hash):
    """Compute every table, draw every figure; return (blocks, {csv name: rows})."""
    T = {
        "bound_vs_empirical": agg.bound_table(cfg, rows, A),
        "transcript_kl": agg.kl_table(cfg, rows, A),
        "d1": agg.d1_table(cfg, rows, A),
        "d2": agg.d2_table(cfg, rows, A),
        "flaggers": agg.flagger_table(cfg, rows, A),
        "estimates": agg.estimates_table(cfg, rows, A),
        "sequential": agg.sequential_table(cfg, rows, A),
        "d3_two_point": agg.d3_twopoint_table(cfg, rows, A),
        "channels": extras.channel_rows(cfg.seed, reps=1000),
        "abstract_env": extras.abstract_env_rows(cfg.seed),
        "multi_objective": extras.multi_objective_rows(cfg.seed),
    }
    T["d3_logistic_curves"], T["d3_logistic_reach"] = agg.d3_logistic_table(cfg, rows, A)
    d0, n_max = cfg.ds[0], cfg.n_grid[-1]
    fig = lambda name: os.path.join(out, name)
    figures.d1(T["d1"], fig("fig_d1.png"), d0, n_max)
    figures.d2(T["d2"], fig("fig_d2.png"), d0, n_max)
    figures.d3(T["d3_two_point"], T["d3_logistic_reach"], fig("fig_d3.png"), d0, n_max)
    figures.bound(T["bound_vs_empirical"], fig("fig_bound_vs_empirical.png"))
    figures.kl(T["transcript_kl"], fig("fig_transcript_kl.png"))
    figures.oracle_vs_free([r for r in T["bound_vs_empirical"] if r["source"] == "simulated"], fig("fig_oracle_vs_oracle_free.png"))
    if len(cfg.ds) > 1:
        figures.d1(T["d1"], fig(f"fig_d1_d{cfg.ds[-1]}.png"), cfg.ds[-1], n_max)

    pending = _prefetch.pop((cfg.seed, out), None)  # a theory check running in a second process:
    # leave a placeholder that ``finish`` fills, so the later sections overlap it
    theory = [("theory_pending", (cfg.seed, out, pending))] if pending else _theory_blocks(_theory_checks(cfg.seed, out))
    B = [("h1", "murphyjax reproduce — the bandit laboratory of arXiv:2509.05381 (v3, Section 3)"),
         ("p", f"Preset '{preset}', config hash {config_hash}. Grid: alpha in {list(cfg.alphas)}, eps in {list(cfg.epss)}, "
               f"d in {list(cfg.ds)}, n in {list(cfg.n_grid)} (draws), lambda in {[('inf' if math.isinf(v) else v) for v in cfg.lam_grid]}, "
               f"{cfg.seeds} seeds, {cfg.replicates} testing transcripts per seed. The paper reports no numbers for "
               "this protocol (its figures are placeholders); every number below was measured by this run."),
         ("h2", "Findings"), ("ul", findings.summary(cfg, T)),
         ("h2", "Setup and the choices the paper leaves open"), ("ul", findings.setup(cfg))]
    B += _d1(cfg, T, fig) + _d2(cfg, T, fig) + _d3(cfg, T, fig) + _bounds(cfg, T, fig) + _rest(cfg, T)
    B += theory + [("h2", "The paper's errata and ambiguities (working notes, Section 9) and how the code resolves them"),
                   errata_block()]
    return B, T


def _theory_blocks(checks):
    return [("h2", "Theory check (murphyjax theory check)"),
            ("p", f"{sum(r.passed for r in checks if not r.erratum)}/{sum(not r.erratum for r in checks)} checks pass; "
                  f"{sum(r.erratum for r in checks)} erratum rows show statements of the paper as written."),
            ("raw_md", report_text.theory_markdown(checks))]


_prefetch: dict = {}


def prefetch_theory_checks(seed, out):
    """Start ``_theory_checks`` in a second process; ``finish`` waits for it and reads its cache.

    The theory check (~1.5 min of mostly single-threaded compiling on a cold cache) then overlaps
    the simulation, the tables and the later report sections instead of following them. The child uses the same persistent
    compilation cache as this process."""
    import subprocess
    import sys

    import jax

    cache = jax.config.jax_compilation_cache_dir
    code = "import murphyjax\n"
    if cache:
        code += f"from murphyjax.cache import enable_compilation_cache\nenable_compilation_cache({cache!r})\n"
    code += f"from murphyjax.experiments.lab.section import _theory_checks\n_theory_checks({seed!r}, {out!r})\n"
    _prefetch[(seed, out)] = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)


def die_with_parent() -> None:
    """In a child process (``preexec_fn``): ask Linux to SIGKILL it when its parent dies, so a killed run
    leaves no helper writing into its folder (prctl PR_SET_PDEATHSIG; a no-op elsewhere)."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))
        except (OSError, AttributeError):
            pass


def _theory_checks(seed, out):
    """``murphyjax theory check`` rows, cached in the run folder (the check takes a while; a resumed
    run reuses it). The cache is keyed by the seed and the hash of ``murphyjax.theory``'s source."""
    from murphyjax import theory
    from murphyjax.theory.checks import Row, run_all

    path = os.path.join(out, f"theory_check-{seed}-{source_hash(theory, digits=12)}.json")

    def load(p):
        fields, data = set(Row.__dataclass_fields__), load_json(p)
        if not (isinstance(data, list) and data and all(isinstance(r, dict) for r in data)):
            raise ValueError("not a list of check rows")
        try:
            return [Row(**{k: v for k, v in r.items() if k in fields}) for r in data]
        except TypeError as e:  # rows of another shape
            raise ValueError(f"not a list of check rows ({e})") from None

    rows = load_saved(path, load)
    if rows is not None:
        return rows
    rows = run_all(seed=seed)
    save_json(path, [r.as_dict() for r in rows])
    return rows


def finish(blocks, env):
    """Fill a pending theory check (wait for its process; the wait is added to env's total) and
    append the run block."""
    import time

    t0 = time.perf_counter()
    done = []
    for b in blocks:
        if b[0] == "theory_pending":
            seed, out, proc = b[1]
            proc.wait()  # it fills the cache that _theory_checks reads (if it failed: computed here)
            done += _theory_blocks(_theory_checks(seed, out))
        else:
            done.append(b)
    blocks = done
    env["total_seconds"] = env.get("total_seconds", 0.0) + time.perf_counter() - t0
    pk = ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v)
    return blocks + [("h2", "Run"), ("ul", [
        f"simulation {env['simulate_seconds']:.1f} s (chunks computed {env['chunks_computed']}, resumed {env['chunks_resumed']}), "
        f"total with report {env['total_seconds']:.1f} s",
        f"devices: {', '.join(env['devices'])}; CPU count {env['cpu_count']}", f"packages: {pk}",
        f"python {env['python'].split()[0]} on {env['platform']}",
        "files: report.md, report.html, fig_*.png, one CSV per table, config.json, environment.json, chunks/"])]


def _d1(cfg, T, fig):
    d0, n = cfg.ds[0], cfg.n_grid[-1]
    sub = [r for r in T["d1"] if r["d"] == d0 and r["n"] == n]
    cols = [("alpha", "α"), ("eps", "ε"), ("lam", "λ"), ("V", "V₊(π_λ)"), ("V_q05", "q05"), ("V_q95", "q95"),
            ("V_hat", "V̂(π_λ)"), ("G", "G(λ)"), ("G_hat", "Ĝ(λ)"), ("G_easy", "G_easy"), ("G_hard", "G_hard"),
            ("rho_tilt", "ρ(λ) exact"), ("rho_tilt_mc", "ρ(λ) MC"), ("rho_ess", "ESS"), ("V_dist", "V₊ under q_λ"),
            ("V_hat_dist", "V̂ under q_λ")]
    out = [("h2", "D1 — gap vs optimisation pressure"), ("img", fig("fig_d1.png"), "D1 at d=%d, n=%d" % (d0, n))]
    if len(cfg.ds) > 1:
        out.append(("img", fig(f"fig_d1_d{cfg.ds[-1]}.png"), f"D1 at d={cfg.ds[-1]}, n={n}"))
    out += [("p", f"Medians over {cfg.seeds} seeds (q05/q95: the 90 % interval), d={d0}, n={n}. G = V₊(π⁺) − V₊(π_λ) = "
                  "G_easy + G_hard; Ĝ = V̂(π⁺) − V̂(π_λ) in proxy (logit) units; ρ(λ) = q_λ(X_hard) is the tilted context "
                  "law of Section 3.4, exact for the linear proxy (envs.tilt_linear: the tilt of N(m, I) by exp(λbᵀx) is N(m + λb, I)), "
                  "next to the self-normalised Monte Carlo estimate and its effective sample size (which collapses at large λ). "
                  "'under q_λ': true and proxy value of the fixed greedy proxy policy when contexts follow q_λ (Proposition 3). "
                  "Full grid (every d and n): d1.csv."), table(cols, sub)]
    return out


def _d2(cfg, T, fig):
    d0, n = cfg.ds[0], cfg.n_grid[-1]
    sub = [r for r in T["d2"] if r["d"] == d0 and r["n"] == n and math.isinf(r["lam"])]
    cols = [("alpha", "α"), ("eps", "ε"), ("rho", "ρ"), ("alpha_rho", "α_ρ"), ("G", "G_ρ(∞)"), ("G_q05", "q05"), ("G_q95", "q95")]
    return [("h2", "D2 — gap under shift"), ("img", fig("fig_d2.png"), f"D2 at d={d0}, n={n}"),
            ("p", "Greedy policy (λ = ∞); all λ, d and n in d2.csv. Proposition 4 predicts G_ρ linear in α_ρ."), table(cols, sub)]


def _d3(cfg, T, fig):
    d0 = cfg.ds[0]
    tp = [r for r in T["d3_two_point"] if r["eta_over_gamma"] in (cfg.eta_fracs[0], cfg.eta_fracs[len(cfg.eta_fracs) // 2], cfg.eta_fracs[-1])]
    c1 = [("alpha", "α"), ("eps", "ε"), ("eta_over_gamma", "η/γ"), ("flagger", "routing"), ("tau_median", "τ"), ("phi_median", "ϕ"),
          ("draws_exact", "draws (exact)"), ("draws_exact_q05", "q05"), ("draws_exact_q95", "q95"),
          ("Q_theorem2_hoeffding", "Q(η) Thm 2"), ("Q_theorem3_T_over_alpha_tau", "Thm 3: T/(ατ)"), ("Q_diluted", "with dilution")]
    lr = [r for r in T["d3_logistic_reach"] if r["d"] == d0 and r["target"] == "G_hard"]
    c2 = [("alpha", "α"), ("eps", "ε"), ("learner", "learner"), ("eta_over_gamma", "η/γ"), ("draws", "draws (median)"),
          ("draws_q05", "q05"), ("draws_q95", "q95"), ("labels", "labels (median)"), ("reached_frac", "seeds reached"),
          ("Q_theorem2", "Q(η) Thm 2")]
    return [("h2", "D3 — query routing"), ("img", fig("fig_d3.png"), f"D3: two-point problem (exact) and logistic learner (d={d0})"),
            ("h3", "Two-point problem of Theorem 2 (the learner knows r₊ and r₋; only w is unknown)"),
            ("p", "Draws n needed for a value gap γ·P(ŵ ≠ w) ≤ η with keep-flagged + majority, computed exactly "
                  "(bandits.exact: binomial mixture, no Hoeffding), using each seed's measured (τ, ϕ) for learned flaggers; "
                  "'simulated' rows read the first grid n where the pooled simulated error is ≤ η/γ. Q(η) = log(γ/η)/(2αε²) "
                  "is Theorem 2's Hoeffding count; Theorem 3's T/(ατ) ignores the false positives' diluting labels."),
            table(c1, tp),
            ("h3", "Section 3 logistic learner (the hard-context direction υ must be learned in d dimensions)"),
            ("p", "Draws until the regret on hard contexts G_hard(∞) ≤ η (∞: not reached within the grid). Routed learners "
                  "label every flagged draw and unflagged draws w.p. p_easy; all curves in d3_logistic_curves.csv."),
            table(c2, lr)]


def _bounds(cfg, T, fig):
    br = [r for r in T["bound_vs_empirical"] if r["n"] in (cfg.n_grid[0], cfg.n_grid[len(cfg.n_grid) // 2], cfg.n_grid[-1])]
    c = [("alpha", "α"), ("eps", "ε"), ("protocol", "protocol"), ("n", "n"), ("n_alpha_kappa", "nακ"),
         ("lower_bound_gap", "bound (γ/4)e^{−nακ}"), ("minimax_gap", "minimax value gap"), ("minimax_err", "minimax P(err)"),
         ("err_lo99", "lo"), ("err_hi99", "hi"), ("exact_err", "exact P(err)"), ("mean_labels", "labels"), ("holds", "bound holds")]
    kr = [r for r in T["transcript_kl"] if r["n"] == cfg.n_grid[len(cfg.n_grid) // 2]]
    ck = [("alpha", "α"), ("eps", "ε"), ("protocol", "protocol"), ("n", "n"), ("kl", "transcript KL"), ("llr_mean", "mean LLR"),
          ("bound_n_alpha_kappa", "bound nακ"), ("kl_over_bound", "ratio"), ("hits", "E[hits]"), ("n_alpha", "nα"),
          ("kl_holds", "KL ≤ nακ"), ("lemma2_holds", "Lemma 2")]
    viol = [r for r in T["bound_vs_empirical"] if not r["holds"]]
    return [("h2", "Minimax error and value gap vs the lower bound (Theorem 1)"), ("img", fig("fig_bound_vs_empirical.png"), "bound vs empirical"),
            ("p", f"{len(T['bound_vs_empirical'])} (cell, protocol, n) points checked, {len(viol)} where the 99 % interval lies "
                  "below the bound. Simulated protocols pool all seeds and both d (the testing problem depends on x only "
                  "through μ_hᵀx); minimax = the worse of the two worlds. Rows shown for three n; all in bound_vs_empirical.csv."),
            table(c, br), ("h3", "Transcript KL vs n α κ(ε) (Lemmas 1, 2, 4)"),
            ("img", fig("fig_transcript_kl.png"), "transcript KL and queried hits"),
            ("p", "KL = E_{P⁺}[Σ_t I_t KL(P⁺(Y_t|obs) ‖ P⁻(Y_t|obs))] (chain rule, exact per transcript, averaged); the mean "
                  "realised LLR estimates the same quantity independently. Rows at the middle n; all in transcript_kl.csv."),
            table(ck, kr), ("h3", "Oracle vs oracle-free"), ("img", fig("fig_oracle_vs_oracle_free.png"), "oracle vs oracle-free"),
            ("ul", findings.oracle_vs_free(cfg, T))]


def _rest(cfg, T):
    return [("h2", "Flaggers (Section 5.1, Theorem 3, B.7)"),
            ("p", "τ, ϕ measured on the evaluation samples (truth) and estimated on the audit set; keep rate "
                  f"{cfg.keep_factor}·α."), table([(k, k) for k in ("d", "alpha", "eps", "flagger", "keep_rate", "tau", "tau_q05", "tau_q95",
                                                     "phi", "tau_audit", "phi_audit", "hit_fraction")], T["flaggers"]),
            ("h2", "Estimating α, ε, γ (Section 5.6)"),
            ("p", f"From an audit of {cfg.audit_size} contexts (hardness and best action revealed); the plug-in bound "
                  "(γ̂/4)exp(−nα̂κ(ε̂)) at the largest n next to the true one."),
            table([(k, k) for k in ("d", "alpha", "eps", "alpha_hat", "alpha_hat_q05", "alpha_hat_q95", "eps_hat", "eps_hat_q05",
                                    "eps_hat_q95", "gamma", "gamma_hat", "hard_audited", "lower_bound", "lower_bound_hat")], T["estimates"]),
            ("h2", "Sequential protocols (B.5 SPRT, B.11 abstention)"),
            table([(k, k) for k in ("alpha", "eps", "protocol", "stopped_frac", "minimax_err", "labels_mean", "exact_error",
                                    "exact_expected_hits", "wald_B5_hits", "escalation_cost_per_hard_round",
                                    "wrong_act_rate_per_hard_round", "eps2_log_inv_delta")], T["sequential"]),
            ("h2", "Channel variants (B.1, Section 5.8, A.8/B.8)"),
            table([(k, k) for k in ("channel", "setting", "measured", "measured_se", "closed_form", "closed_form_what",
                                    "relative_error")], T["channels"]),
            ("h2", "Abstract two-world environment (Section 2.1): exact γ"),
            table([(k, k) for k in T["abstract_env"][0]], T["abstract_env"]),
            ("h2", "Multi-objective law, eq. (1), three actions"),
            table([(k, k) for k in T["multi_objective"][0]], T["multi_objective"])]
