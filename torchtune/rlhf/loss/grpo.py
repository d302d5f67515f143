"""GRPO's clipped token objective with a KL penalty to the reference policy."""

from typing import NamedTuple

import torch
from torch import nn


class GRPOLossOutput(NamedTuple):
    """What :class:`GRPOLoss` returns; ``loss`` carries the gradient, the rest are detached sums.

    Args:
        loss (torch.Tensor): scalar, summed over the valid response tokens of the micro-batch.
        policy_loss (torch.Tensor): the summed negated clipped surrogate.
        kl (torch.Tensor): the summed KL estimate to the reference.
        ratios (torch.Tensor): the summed probability ratios.
        clipfrac (torch.Tensor): the number of tokens whose ratio was clipped.
        num_tokens (torch.Tensor): the number of valid response tokens the sums run over.
    """

    loss: torch.Tensor
    policy_loss: torch.Tensor
    kl: torch.Tensor
    ratios: torch.Tensor
    clipfrac: torch.Tensor
    num_tokens: torch.Tensor


class GRPOLoss(nn.Module):
    """Group relative policy optimisation's per-token objective (Shao et al., 2024), summed.

    Each response token ``t`` of sequence ``i`` has ``ratio = exp(pi - pi_old)`` and the
    sequence's group-normalised advantage ``A_i`` (``torchtune.rlhf.group_advantages``)::

        surrogate = min(ratio * A_i, clip(ratio, 1 - epsilon, 1 + epsilon_high) * A_i)
        kl        = exp(ref - pi) - (ref - pi) - 1        (non-negative, unbiased KL(pi || ref))
        loss_t    = -(surrogate - kl_coeff * kl)

    The loss is the **sum** over valid tokens; the recipe divides the accumulated gradient by
    the valid tokens of the whole optimizer step (``training.GradientAccumulator``), so splitting
    a rollout batch into micro-batches changes nothing (token-level normalisation, as DAPO).

    Args:
        epsilon (float): lower clip range of the ratio. Default 0.2.
        epsilon_high (float): upper clip range; None uses ``epsilon``. Default None.
        kl_coeff (float): weight of the KL penalty (GRPO's beta). Default 0.04.
    """

    def __init__(self, epsilon: float = 0.2, epsilon_high: float = None, kl_coeff: float = 0.04) -> None:
        super().__init__()
        self.epsilon = epsilon
        self.epsilon_high = epsilon if epsilon_high is None else epsilon_high
        self.kl_coeff = kl_coeff

    def forward(
        self,
        pi_old_logprobs: torch.Tensor,
        pi_logprobs: torch.Tensor,
        ref_logprobs: torch.Tensor,
        advantages: torch.Tensor,
        response_mask: torch.Tensor,
    ) -> GRPOLossOutput:
        """Loss of one micro-batch of rollouts.

        Args:
            pi_old_logprobs (torch.Tensor): ``[b, r]`` log-probs under the rollout policy.
            pi_logprobs (torch.Tensor): ``[b, r]`` log-probs under the policy being trained.
            ref_logprobs (torch.Tensor): ``[b, r]`` log-probs under the reference policy.
            advantages (torch.Tensor): ``[b]`` one advantage per sequence.
            response_mask (torch.Tensor): ``[b, r]`` bool, True at response tokens (the stop token
                included), False at padding after it.

        Returns:
            GRPOLossOutput: the summed loss and statistics.

        Raises:
            ValueError: if the shapes disagree.
        """
        if not (pi_old_logprobs.shape == pi_logprobs.shape == ref_logprobs.shape == response_mask.shape):
            raise ValueError(
                f"log-probs and response_mask need one [b, r] shape, got {tuple(pi_old_logprobs.shape)}, "
                f"{tuple(pi_logprobs.shape)}, {tuple(ref_logprobs.shape)}, {tuple(response_mask.shape)}"
            )
        if advantages.shape != pi_logprobs.shape[:1]:
            raise ValueError(f"advantages need shape [b] = [{pi_logprobs.shape[0]}], got {tuple(advantages.shape)}")
        mask = response_mask.to(pi_logprobs.dtype)
        adv = advantages.to(pi_logprobs.dtype).unsqueeze(1)  # [b, 1]
        ratios = torch.exp(pi_logprobs - pi_old_logprobs)
        clipped = torch.clamp(ratios, 1.0 - self.epsilon, 1.0 + self.epsilon_high)
        surrogate = torch.minimum(ratios * adv, clipped * adv)
        log_ref_ratio = ref_logprobs - pi_logprobs
        kl = torch.exp(log_ref_ratio) - log_ref_ratio - 1.0
        token_loss = -(surrogate - self.kl_coeff * kl)
        return GRPOLossOutput(
            loss=(token_loss * mask).sum(),
            policy_loss=(-surrogate * mask).sum().detach(),
            kl=(kl * mask).sum().detach(),
            ratios=(ratios * mask).sum().detach(),
            clipfrac=((clipped != ratios).to(mask.dtype) * mask).sum().detach(),
            num_tokens=response_mask.sum(),
        )
