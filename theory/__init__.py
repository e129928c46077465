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
