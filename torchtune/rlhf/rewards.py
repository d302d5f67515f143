"""Reward maths of PPO: penalties, KL-shaped per-token rewards, GAE advantages, whitening."""

from typing import Optional, Tuple

import torch

# Keeps divisions finite on an empty mask and rsqrt finite on zero variance.
_EPS = 1e-8


def get_reward_penalty_mask(
    padding_masks: torch.Tensor,
    seq_lens: torch.Tensor,
    penalise_no_eos: bool = True,
    min_response_length: int = None,
) -> torch.Tensor:
    """Which responses get the fixed reward penalty instead of their score.

    A response without a stop token (no padding after it) or shorter than
    ``min_response_length`` tokens is penalised.

    Args:
        padding_masks (torch.Tensor): ``[b, r]`` True where the response is padding (after its
            first stop token).
        seq_lens (torch.Tensor): ``[b]`` response lengths without padding.
        penalise_no_eos (bool): penalise responses that never stopped. Default True.
        min_response_length (int): penalise responses shorter than this; None for no minimum.
            Default None.

    Returns:
        torch.Tensor: ``[b]`` bool, True = penalise.
    """
    penalise = torch.zeros_like(seq_lens, dtype=torch.bool)
    if penalise_no_eos:
        penalise = penalise | ~padding_masks.any(dim=-1)
    if min_response_length is not None:
        penalise = penalise | (seq_lens < min_response_length)
    return penalise


def get_rewards_ppo(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    kl_coeff: float,
    valid_score_idxs: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token PPO rewards: a KL penalty at every token plus the sequence score at its last one.

    With ``kl = logprobs - ref_logprobs`` (the per-token estimate of KL(policy || reference)),
    token ``t`` of row ``i`` gets ``-kl_coeff * kl[i, t]``, and the score ``scores[i]`` is added
    at ``valid_score_idxs[i]`` (the last position when None).

    Args:
        scores (torch.Tensor): ``[b]`` reward-model scores.
        logprobs (torch.Tensor): ``[b, r]`` policy log-probabilities of the response tokens.
        ref_logprobs (torch.Tensor): ``[b, r]`` reference log-probabilities of the same tokens.
        kl_coeff (float): weight of the KL penalty.
        valid_score_idxs (Optional[torch.Tensor]): ``[b]`` position of each response's last valid
            token, where its score goes. Default None: the last position.

    Returns:
        Tuple[torch.Tensor, torch.Tensor, torch.Tensor]: total rewards ``[b, r]``, the KL
        estimates ``[b, r]`` and the KL rewards ``-kl_coeff * kl`` ``[b, r]``.
    """
    kl = logprobs - ref_logprobs
    kl_rewards = -kl_coeff * kl
    total = kl_rewards.clone()
    rows = torch.arange(scores.shape[0], device=scores.device)
    if valid_score_idxs is None:
        valid_score_idxs = torch.full_like(rows, logprobs.shape[-1] - 1)
    total[rows, valid_score_idxs] += scores.to(total.dtype)
    return total, kl, kl_rewards


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: Optional[int] = None) -> torch.Tensor:
    """Mean of the entries of ``x`` where ``mask`` is True (over ``dim``, or all of them).

    Args:
        x (torch.Tensor): values.
        mask (torch.Tensor): bool (or 0/1) tensor of ``x``'s shape.
        dim (Optional[int]): dimension to reduce; None reduces all. Default None.

    Returns:
        torch.Tensor: the mean (0 where nothing is selected).
    """
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / (mask.sum() + _EPS)
    return (x * mask).sum(dim=dim) / (mask.sum(dim=dim) + _EPS)


def masked_var(centered_values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of already centred values over the entries where ``mask`` is True.

    Args:
        centered_values (torch.Tensor): values minus their (masked) mean.
        mask (torch.Tensor): bool tensor of the same shape.
        unbiased (bool): apply Bessel's correction ``n / (n - 1)``. Default True.

    Returns:
        torch.Tensor: scalar variance.

    Raises:
        ValueError: if ``unbiased`` and the mask selects fewer than two entries.
    """
    var = masked_mean(centered_values.pow(2), mask)
    if unbiased:
        n = mask.sum()
        if n < 2:
            raise ValueError(f"unbiased masked_var needs at least 2 selected entries, the mask selects {int(n)}")
        var = var * n / (n - 1)
    return var


def whiten(x: torch.Tensor, mask: Optional[torch.Tensor] = None, shift_mean: bool = True) -> torch.Tensor:
    """Normalise ``x`` to unit variance (and zero mean), over the masked entries when given.

    Args:
        x (torch.Tensor): values.
        mask (Optional[torch.Tensor]): bool tensor of ``x``'s shape; statistics use only its True
            entries. Default None: all entries.
        shift_mean (bool): subtract the mean; False keeps the original mean. Default True.

    Returns:
        torch.Tensor: ``(x - mean) / sqrt(var + 1e-8)``, plus ``mean`` when not ``shift_mean``.
    """
    if mask is None:
        mean, var = x.mean(), x.var()
    else:
        mean = masked_mean(x, mask)
        var = masked_var(x - mean, mask)
    out = (x - mean) * torch.rsqrt(var + _EPS)
    return out if shift_mean else out + mean


def estimate_advantages(
    values: torch.Tensor,
    rewards: torch.Tensor,
    gamma: float,
    lmbda: float,
    masks: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (GAE) over the response positions.

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` (``V`` past the last position is 0) and
    ``A_t = delta_t + gamma * lmbda * A_{t+1}``; returns are ``A + V``. The advantages are then
    whitened (over ``masks`` when given, and set to 0 outside it); the returns are not.

    Args:
        values (torch.Tensor): ``[b, r]`` value estimates.
        rewards (torch.Tensor): ``[b, r]`` per-token rewards (``get_rewards_ppo``).
        gamma (float): discount factor.
        lmbda (float): GAE's lambda.
        masks (Optional[torch.Tensor]): ``[b, r]`` bool, True at valid (non-padding) positions.
            Default None: all valid.

    Returns:
        Tuple[torch.Tensor, torch.Tensor]: advantages ``[b, r]`` and returns ``[b, r]``.
    """
    r = values.shape[-1]
    next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], dim=1)
    deltas = rewards + gamma * next_values - values
    running = torch.zeros_like(values[:, 0])
    advantages = torch.empty_like(values)
    for t in range(r - 1, -1, -1):  # backwards: each advantage folds in the later ones
        running = deltas[:, t] + gamma * lmbda * running
        advantages[:, t] = running
    returns = advantages + values
    if masks is None:
        return whiten(advantages), returns
    advantages = whiten(advantages, mask=masks).masked_fill(~masks.bool(), 0.0)
    return advantages, returns
