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
from torchtune.rlhf._types import PPOStats, Trajectory
from torchtune.rlhf.rewards import (
    estimate_advantages,
    get_reward_penalty_mask,
    get_rewards_ppo,
    masked_mean,
    masked_var,
    whiten,
)

# ---- GRPO: group sampling, group-normalised advantages, updates; verifiable rewards ----
from torchtune.rlhf._grpo import (
    generate_rollouts,
    group_advantages,
    grpo_update,
    left_pad,
    response_logprobs,
    Rollout,
)
from torchtune.rlhf._verifiable_rewards import ArithmeticAnswerReward, parse_number

__all__ = [
    "get_batch_log_probs",
    "logits_to_logprobs",
    "truncate_sequence_at_first_stop_token",
    "truncate_sequence_for_logprobs",
    # PPO / GRPO names
    "PPOStats",
    "Trajectory",
    "estimate_advantages",
    "get_reward_penalty_mask",
    "get_rewards_ppo",
    "masked_mean",
    "masked_var",
    "whiten",
    "Rollout",
    "generate_rollouts",
    "group_advantages",
    "grpo_update",
    "left_pad",
    "response_logprobs",
    "ArithmeticAnswerReward",
    "parse_number",
]
