"""Preference-optimisation and policy-gradient losses."""
# ---- Preference losses (DPO family): dpo.py ----
from torchtune.rlhf.loss.dpo import DPOLoss, ORPOLoss, RSOLoss, SimPOLoss

# ---- Policy-gradient losses (PPO / GRPO): ppo.py ----
from torchtune.rlhf.loss.grpo import GRPOLoss, GRPOLossOutput
from torchtune.rlhf.loss.ppo import PPOLoss

__all__ = [
    "DPOLoss",
    "ORPOLoss",
    "RSOLoss",
    "SimPOLoss",
    # PPO / GRPO names
    "PPOLoss",
    "GRPOLoss",
    "GRPOLossOutput",
]
