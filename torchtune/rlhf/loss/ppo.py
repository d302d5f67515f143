"""PPO's clipped policy and value objective."""

from typing import Optional, Tuple

import torch
from torch import nn

from torchtune.rlhf.rewards import masked_mean


def _mean(x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    return x.mean() if mask is None else masked_mean(x, mask)


class PPOLoss(nn.Module):
    """The clipped surrogate policy loss plus a clipped value loss (Schulman et al., 2017).

    Per response token, with ``ratio = exp(pi_logprobs - pi_old_logprobs)``::

        policy = max(-A * ratio, -A * clip(ratio, 1 - epsilon, 1 + epsilon))
        value  = 0.5 * max((V - R)^2, (clip(V, V_old - c, V_old + c) - R)^2)
        loss   = mean(policy) + value_coeff * mean(value)

    Means are over the tokens selected by the masks (all tokens without one).

    Args:
        epsilon (float): clip range of the probability ratio. Default 0.1.
        value_clip_range (float): how far a value may move from the rollout's estimate, ``c``.
            Default 0.2.
        value_coeff (float): weight of the value loss. Default 0.1.
    """

    def __init__(self, epsilon: float = 0.1, value_clip_range: float = 0.2, value_coeff: float = 0.1):
        super().__init__()
        self.epsilon = epsilon
        self.value_clip_range = value_clip_range
        self.value_coeff = value_coeff

    def forward(
        self,
        pi_old_logprobs: torch.Tensor,
        pi_logprobs: torch.Tensor,
        advantages: torch.Tensor,
        phi_old_values: torch.Tensor,
        phi_values: torch.Tensor,
        returns: torch.Tensor,
        padding_masks: Optional[torch.Tensor] = None,
        value_padding_masks: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Compute the loss of one PPO mini-batch.

        Args:
            pi_old_logprobs (torch.Tensor): ``[b, r]`` log-probs of the rollout policy.
            pi_logprobs (torch.Tensor): ``[b, r]`` log-probs of the policy being trained.
            advantages (torch.Tensor): ``[b, r]`` advantages (``estimate_advantages``).
            phi_old_values (torch.Tensor): ``[b, r]`` values estimated during the rollout.
            phi_values (torch.Tensor): ``[b, r]`` values of the value model being trained.
            returns (torch.Tensor): ``[b, r]`` value targets.
            padding_masks (Optional[torch.Tensor]): ``[b, r]`` bool, True at response tokens that
                count in the policy loss (not padding). Default None: all.
            value_padding_masks (Optional[torch.Tensor]): ``[b, r]`` bool, True where the value
                loss counts. Default None: all.

        Returns:
            Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]: the loss,
            and detached: the policy loss, the value loss, the mean ratio and the clip fraction.
        """
        ratios = torch.exp(pi_logprobs - pi_old_logprobs)
        clipped = torch.clamp(ratios, 1.0 - self.epsilon, 1.0 + self.epsilon)
        unclipped_loss = -advantages * ratios
        clipped_loss = -advantages * clipped
        clipfrac = _mean((clipped_loss > unclipped_loss).to(pi_logprobs.dtype), padding_masks)
        policy_loss = _mean(torch.maximum(unclipped_loss, clipped_loss), padding_masks)

        values_clipped = torch.clamp(
            phi_values, phi_old_values - self.value_clip_range, phi_old_values + self.value_clip_range
        )
        value_loss = torch.maximum((phi_values - returns) ** 2, (values_clipped - returns) ** 2)
        value_loss = 0.5 * _mean(value_loss, value_padding_masks)

        loss = policy_loss + self.value_coeff * value_loss
        return loss, policy_loss.detach(), value_loss.detach(), ratios.mean().detach(), clipfrac.detach()
