"""Alignment methods on LLM policies, on tasks whose true utility is known.

    tasks       preference tasks (sycophancy, length) with a biased hard set, exact scoring of any text
    feedback    crowd (Massart), routed (calibration oracle / noisy flagger), programmatic AI judge
    data        Hugging Face ``datasets`` (Parquet) in the prompt/chosen/rejected convention; local files
    codec       word-level (tiny policies) and chat-template (SmolLM2) codecs, the fixed sequence layout
    core        forward passes, completion log-probs, scalar heads, rollouts, KL (exact and estimated)
    preference  DPO / IPO / f-DPO, Bradley-Terry reward model and SFT steps
    rl          PPO (KL in the reward) and group-relative (KL in the loss)
    search      best-of-n curves and ReST's selection
    evaluate    proxy, true utility, gap, hard mass, KL of a policy's generations
    loops       training loops with evaluation hooks and the onset monitor
    judges      SmolLM2 (or any chat LLM) prompted with a constitution as a pairwise judge
"""
