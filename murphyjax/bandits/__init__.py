"""The bandit laboratory: the paper's synthetic environments, feedback channels, query protocols,
learners and diagnostics (arXiv:2509.05381 v3, Sections 2-3, 5 and Appendix B).

Modules (pure functions over pytrees, vmap-friendly, float32 simulators):
  envs         abstract two-world env (exact gamma), Gaussian mixture of Section 3.1, shifted
               laws mu_rho, the three-action environment of eq. (1)
  channels     Massart channel relative to a fixed reference action, heterogeneous and drifting
               eps, scalar ratings with bounded LLR
  protocols    query-everything majority, Bayes LR test, active rule, oracle / flagger routing,
               SPRT, abstention; draws and labels counted separately
  exact        exact error and draws of keep-flagged + majority (no Hoeffding)
  learners     logistic preference model (Newton), pi_lambda, audit-set flaggers, Section 5.6 estimates
  diagnostics  D1-D3 curves, tilted hard mass, reach times, medians with 90 % intervals
"""

from murphyjax.bandits import channels, diagnostics, envs, exact, learners, protocols

__all__ = ["channels", "diagnostics", "envs", "exact", "learners", "protocols"]
