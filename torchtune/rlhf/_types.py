"""What a PPO rollout records, and the statistics of one PPO update."""

from typing import NamedTuple

import torch


class Trajectory(NamedTuple):
    """One batch of PPO rollouts: the generated sequences and everything scored on them.

    ``b`` is the number of rollouts, ``p`` the (left-padded) prompt length and ``r`` the number
    of generated positions.

    Args:
        query_responses (torch.Tensor): ``[b, p + r]`` prompt followed by the response, with pad ids
            after each response's first stop token.
        logprobs (torch.Tensor): ``[b, r]`` log-probabilities of the response tokens under the
            policy that generated them.
        ref_logprobs (torch.Tensor): ``[b, r]`` the same under the frozen reference policy.
        values (torch.Tensor): ``[b, r]`` value-model estimates at each response position.
        masks (torch.Tensor): ``[b, p + r, p + r]`` boolean attention mask (causal, padding hidden).
        position_ids (torch.Tensor): ``[b, p + r]`` positions, 0 at each row's first real token.
        response_padding_masks (torch.Tensor): ``[b, r]`` True where the response is padding
            (after its first stop token).
        value_padding_masks (torch.Tensor): ``[b, r]`` True where no value is estimated (padding,
            and the position after the last valid response token).
        value_seq_idxs (torch.Tensor): ``[b]`` index of each response's last valid token.
        scores (torch.Tensor): ``[b]`` reward-model scores, penalties applied.
        seq_lens (torch.Tensor): ``[b]`` response lengths without padding.
    """

    query_responses: torch.Tensor
    logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    values: torch.Tensor
    masks: torch.Tensor
    position_ids: torch.Tensor
    response_padding_masks: torch.Tensor
    value_padding_masks: torch.Tensor
    value_seq_idxs: torch.Tensor
    scores: torch.Tensor
    seq_lens: torch.Tensor


class PPOStats(NamedTuple):
    """Statistics of PPO optimisation steps (each field a scalar tensor).

    Args:
        loss (torch.Tensor): the total loss (policy + ``value_coeff`` * value).
        policy_loss (torch.Tensor): the clipped policy objective, negated.
        value_loss (torch.Tensor): the clipped value loss.
        ratios (torch.Tensor): mean ratio of new to old token probabilities.
        clipfrac (torch.Tensor): fraction of response tokens whose ratio was clipped.
        approx_policy_kls (torch.Tensor): estimated KL between the old and the updated policy.
    """

    loss: torch.Tensor
    policy_loss: torch.Tensor
    value_loss: torch.Tensor
    ratios: torch.Tensor
    clipfrac: torch.Tensor
    approx_policy_kls: torch.Tensor
