"""Where arXiv:2509.05381 v3 is wrong or ambiguous, and what murphyjax does instead.

Each entry names the paper's statement, the resolution implemented in code and the rows of
the theory check (``murphyjax theory check``) that show the discrepancy. ``kind`` is "error"
(the statement is false: its rows fail), "loose" (true, with a constant the argument improves)
or "choice" (ambiguous: the reading implemented). Reports and the README render this list;
tests keep it in sync with the check rows.
"""

from __future__ import annotations

ERRATA: list[dict] = [
    # ---------------------------------------------------------------- errors (shown failing)
    {"id": "C.7", "kind": "error",
     "paper": "d/dlam E_mu[r(X, pi_lam(X))] = Cov_mu(r(X, pi_lam(X)), s(X)) for a policy with logit lam s(x).",
     "resolution": "The derivative is E_mu[s sigma'(lam s)(r_1 - r_0)] (laws.policy_value_derivative); "
                   "the covariance claim is kept as policy_value_derivative_paper.",
     "rows": ["C7.paper", "C7.corrected"]},
    {"id": "B.4", "kind": "error",
     "paper": "d/dlam V_w(pi_lam) = rho'(lam)(E[r|hard] - E[r|easy]): only rho is differentiated.",
     "resolution": "laws.overoptimization returns the full derivative (adds (1-rho) dE_easy/dlam + rho dE_hard/dlam) "
                   "next to B.4's and their difference (note 9.10).",
     "rows": ["B4.paper", "B4.full"]},
    {"id": "B.8", "kind": "error",
     "paper": "Per-hit KL of ratings with sigma^2-subgaussian LLR of mean m is m^2/(2 sigma^2).",
     "resolution": "The per-hit KL is the mean LLR m (= 2m^2/sigma^2 for Gaussian ratings, where sigma^2 = 2m). "
                   "B.8's value is m/4 there and its 'lower bound' (1/4) exp(-T m/4) exceeds the exact Bayes error "
                   "Phi(-sqrt(T m/2)) for every T m > 2.366.",
     "rows": ["B8.kl_paper", "B8.bound_paper", "B8.kl_correct", "B8.bound_correct"]},
    {"id": "B.5", "kind": "error",
     "paper": "SPRT: E[T] <= log((1-delta)/delta) / kappa(eps).",
     "resolution": "Wald's approximation drops the overshoot. murphy.sprt_exact solves the SPRT on Massart labels "
                   "exactly (gambler's ruin); the valid bound is (log((1-delta)/delta) + L)/kappa, L = 2 atanh(2 eps).",
     "rows": ["B5.wald_paper", "B5.wald_corrected", "B5.sprt_hits", "B5.sprt_error"]},
    {"id": "C.2", "kind": "error",
     "paper": "KL(q_lam||mu) and KL(mu||q_lam) are both convex in lam.",
     "resolution": "KL(mu||q) has second derivative A'' >= 0 (convex); KL(q||mu) has A'' + lam A''' and is not convex "
                   "in general (Bernoulli(0.1) base, s = 1{x=1}, lam ~ 4). Both are nondecreasing in |lam| (true).",
     "rows": ["C2.kl_convex_paper", "C2.kl_curvature", "C2.reverse_convex", "C2.kl_monotone"]},
    # ---------------------------------------------------------------- ambiguities (choices)
    {"id": "note 9.1", "kind": "choice",
     "paper": "'The label favours the truly better action with probability 1/2 + w eps' (world-dependent reference: KL = 0).",
     "resolution": "Labels are relative to a fixed reference action: Z = 1{label prefers pi^+(x)}, P_w(Z=1 | hard) = 1/2 + w eps.",
     "rows": ["thm1.transcript_kl"]},
    {"id": "note 9.3", "kind": "choice",
     "paper": "Theorem 2 counts every context draw (T/alpha) as a query while only T labels are requested.",
     "resolution": "oracle_hits counts labels, oracle_queries counts draws; every protocol keeps both counters.",
     "rows": ["thm2.draws"]},
    {"id": "note 9.4", "kind": "choice",
     "paper": "The oracle is presented as removing the barrier, but Theorem 1 applies to the oracle learner too.",
     "resolution": "No separation is claimed: both rates are exp(-Theta(n alpha eps^2)); the bandit laboratory measures both.",
     "rows": ["thm1.bayes_error"]},
    {"id": "note 9.5", "kind": "choice",
     "paper": "'A testing mistake induces value gap at least gamma.'",
     "resolution": "Exact for learners that output pi^+ or pi^-; stated as such in murphy_lower_bound's docstring.",
     "rows": []},
    {"id": "note 9.6 / Thm 3", "kind": "error",
     "paper": "Noisy flagger: 'T/p >= T/(alpha tau)' and false-positive labels ignored.",
     "resolution": "diluted_vote_accuracy = 1/2 + eps alpha tau/(alpha tau + (1-alpha) phi) and diluted_flagger_queries "
                   "count the cost of diluting labels. Theorem 3's T/(alpha tau) (oracle_queries(tpr=tau)) is the expected "
                   "number of draws until keep-flagged + majority holds T true-hit labels: the cost of that one procedure, "
                   "an upper bound on the draws it needs for a gap <= eta, not a lower bound over procedures.",
     "rows": ["thm3.dilution", "thm3.dilution_cost"]},
    {"id": "note 9.9 / Prop 1", "kind": "choice",
     "paper": "The main-text proof of Proposition 1 omits the normaliser.",
     "resolution": "Implemented from A.7 (correct): d log rho/d lam = Cov_q(H, s)/rho.",
     "rows": ["prop1.log_drift"]},
    {"id": "note 9.12 / eq. (1)", "kind": "loose",
     "paper": "sum_j regret_j >= alpha_S min_j m_j.",
     "resolution": "True but loose: the argument gives 2 alpha_S min m_j (at most one of three optima matched per context), "
                   "and the constant 2 is attained. Eq. (1) needs 3 actions; multiobjective_bound(constant='paper'|'proof').",
     "rows": ["eq1.paper", "eq1.proof", "eq1.tight"]},
    {"id": "B.11", "kind": "choice",
     "paper": "Abstain while the posterior over w lies in [1/2 - delta, 1/2 + delta]; the test then needs "
              "~eps^-2 log(1/delta) hits.",
     "resolution": "delta is used twice: as the band's half-width and, in the hit count, as an error level. "
                   "bandits.protocols.abstain takes the half-width as band; the hit count holds with delta read as "
                   "1/2 - band, the error probability at the band's edge.",
     "rows": []},
    {"id": "note 9.13", "kind": "choice",
     "paper": "Tilting of the context law q_lam and of the action policy pi_lam are used interchangeably.",
     "resolution": "Kept apart by name: tilting.tilt (context or per-context policy tilt) vs laws.logistic_policy.",
     "rows": []},
    {"id": "Kwa et al. 3.2 caveat", "kind": "choice",
     "paper": "(related work) light-tailed errors such as Exp(1) admit the KL-regularised optimum for all beta.",
     "resolution": "Tilts with a divergent partition function raise ValueError (exponential_score_tilt, exponential_gap, "
                   "heavy_tail_tilt); they never return inf or NaN.",
     "rows": ["exp.mean"]},
]


def errata_markdown() -> str:
    """A Markdown table of ``ERRATA`` (paper statement, resolution, check rows)."""
    out = ["| where | kind | the paper says | murphyjax does | check rows |", "|---|---|---|---|---|"]
    for e in ERRATA:
        rows = ", ".join(f"`{r}`" for r in e["rows"]) or "-"
        out.append(f"| {e['id']} | {e['kind']} | {e['paper']} | {e['resolution']} | {rows} |")
    return "\n".join(out)
