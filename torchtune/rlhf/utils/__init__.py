"""Reward-model checkpoint conversion between Hugging Face and torchtune layouts."""
from torchtune.rlhf.utils._convert_weights import reward_hf_to_tune, reward_tune_to_hf

__all__ = ["reward_hf_to_tune", "reward_tune_to_hf"]
