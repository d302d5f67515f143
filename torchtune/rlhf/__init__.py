"""Preference and reward post-training: sequence utilities, reward maths and their types.

Losses live in ``torchtune.rlhf.loss``; reward-model checkpoint conversion in ``torchtune.rlhf.utils``.
"""
# ---- Sequence utilities (DPO and PPO): log-probs of sequences, truncation at stop tokens ----
from torchtune.rlhf.sequence_processing import (
    get_batch_log_probs,
    logits_to_logprobs,
    truncate_sequence_at_first_stop_token,
    truncate_sequence_for_logprobs,
)

# ---- PPO / GRPO: reward utilities (rewards.py) and rollout types (_types.py) ----

__all__ = [
    "get_batch_log_probs",
    "logits_to_logprobs",
    "truncate_sequence_at_first_stop_token",
    "truncate_sequence_for_logprobs",
    # PPO / GRPO names
]
