"""Executable theory of the Alignment Gap (ships as ``murphyjax.theory``).

Every closed form and bound of arXiv:2509.05381 v3, float64, vectorised, with input
validation; each docstring names the paper's section or equation. Pure math: nothing here
does I/O or imports the rest of murphyjax.
"""

from murphyjax.theory.murphy import (
    bernoulli_kl,
    bretagnolle_huber,
    budget_for_unit_exponent,
    diluted_flagger_queries,
    diluted_vote_accuracy,
    flagger_hit_fraction,
    gaussian_rating_bayes_error,
    gaussian_rating_llr,
    hard_disagreement_lower_bound,
    heterogeneous_kappa,
    heterogeneous_lower_bound,
    kappa,
    kappa_upper_bound,
    majority_error,
    majority_error_bound,
    mixture_exponent,
    mixture_lower_bound,
    murphy_lower_bound,
    oracle_hits,
    oracle_queries,
    rating_kl_per_hit,
    rating_kl_per_hit_paper,
    score_flagger,
    sequential_queries,
    sign_error_lower_bound,
    sprt_exact,
    sprt_expected_hits_paper,
    sprt_threshold,
    transcript_kl_bound,
)
from murphyjax.theory.tilting import (
    Tilt,
    exponential_score_tilt,
    gaussian_tilt,
    hard_mass,
    hard_mass_cs_bound,
    hard_mass_cs_integrated,
    hard_mass_drift,
    hard_mass_first_order,
    i_projection,
    log_partition,
    tilt,
    vector_log_partition,
    vector_tilt,
)
from murphyjax.theory.gap import (
    alignment_gap,
    conditional_true_mean,
    exponential_gap,
    gaussian_gap,
    heavy_tail_tilt,
    kwa_tail_mixture,
    true_utility_peak,
)
from murphyjax.theory.laws import (
    first_downturn,
    logistic_policy,
    optimization_drift,
    overoptimization,
    policy_value,
    policy_value_derivative,
    policy_value_derivative_paper,
    proxy_true_divergence,
    shifted_value,
    tilted_value,
)
from murphyjax.theory.multiobjective import (
    cover_number,
    disagreement_set,
    margins,
    multiobjective_bound,
    optimal_actions,
    regrets,
)
from murphyjax.theory.maps import (
    drift_at_zero,
    flagger_beta_star,
    flagger_covariance,
    maps_weights,
    project_out_hard,
    residual_drift,
    shaped_score,
    temperature_kl,
)
from murphyjax.theory.bon import (
    bon_kl,
    bon_kl_bound,
    bon_probs,
    bon_unbiased_estimate,
    bon_win_rate,
    bon_win_rate_exact,
    expected_max_normal,
    fit_gao,
    gao_bon,
    gao_peak,
    gao_rl,
    tilt_frontier_normal,
)
from murphyjax.theory.errata import ERRATA, errata_markdown
from murphyjax.theory.sharp import (
    PROTOCOLS,
    bayes_error,
    bayes_error_grid,
    chernoff_error_approx,
    chernoff_information,
    error_exponents,
)
