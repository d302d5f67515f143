"""Preference losses on per-sequence log-probabilities: DPO, RSO (hinge), SimPO and ORPO.

Each returns ``(losses, chosen_rewards, rejected_rewards)``, all ``[b]``; losses are per pair (the
recipe reduces them), rewards are detached and meant for logging. DPO and RSO compare the policy with
a reference model and take summed log-probs; SimPO and ORPO are reference-free and take log-probs
averaged over each response's tokens (``get_batch_log_probs(..., return_average_logprobs=True)``).
"""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

_Out = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _check_same_shape(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"preference log-probs need one shape [b], got {shapes}")


class DPOLoss(nn.Module):
    """Direct Preference Optimization (Rafailov et al., 2023, https://arxiv.org/abs/2305.18290).

    With ``h = (log pi(y_w) - log pi(y_l)) - (log ref(y_w) - log ref(y_l))`` the loss per pair is
    ``-(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h)``: the sigmoid loss, or with
    ``label_smoothing = eps > 0`` the conservative DPO of Mitchell (2023) for noisy preferences.

    Args:
        beta (float): inverse temperature of the implicit reward; higher keeps the policy closer to
            the reference. Default 0.1.
        label_smoothing (float): assumed probability that a preference label is flipped, in
            ``[0, 0.5)``. Default 0.0.

    Raises:
        ValueError: if ``label_smoothing`` is outside ``[0, 0.5)``.
    """

    def __init__(self, beta: float = 0.1, label_smoothing: float = 0.0):
        super().__init__()
        if not 0.0 <= label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
        self.beta = beta
        self.label_smoothing = label_smoothing

    def forward(
        self,
        policy_chosen_logps: torch.Tensor,
        policy_rejected_logps: torch.Tensor,
        reference_chosen_logps: torch.Tensor,
        reference_rejected_logps: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-pair DPO loss and implicit rewards.

        Args:
            policy_chosen_logps (torch.Tensor): ``[b]`` summed log-probs of the chosen responses.
            policy_rejected_logps (torch.Tensor): ``[b]`` the same for the rejected responses.
            reference_chosen_logps (torch.Tensor): ``[b]`` chosen, under the reference model.
            reference_rejected_logps (torch.Tensor): ``[b]`` rejected, under the reference model.

        Returns:
            Tuple[torch.Tensor, torch.Tensor, torch.Tensor]: losses, chosen rewards
            ``beta (log pi - log ref)`` and rejected rewards, each ``[b]`` (rewards detached).

        Raises:
            ValueError: if the four inputs differ in shape.
        """
        _check_same_shape(
            policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
            reference_chosen_logps=reference_chosen_logps, reference_rejected_logps=reference_rejected_logps,
        )
        chosen_ratio = policy_chosen_logps - reference_chosen_logps
        rejected_ratio = policy_rejected_logps - reference_rejected_logps
        margin = self.beta * (chosen_ratio - rejected_ratio)
        eps = self.label_smoothing
        losses = -(1 - eps) * F.logsigmoid(margin) - eps * F.logsigmoid(-margin)
        return losses, self.beta * chosen_ratio.detach(), self.beta * rejected_ratio.detach()


class RSOLoss(nn.Module):
    """Hinge loss on the DPO margin, from Statistical Rejection Sampling Optimization (Liu et al., 2023,
    https://arxiv.org/abs/2309.06657): ``max(0, 1 - gamma h)`` with ``h`` the log-ratio difference of :class:`DPOLoss`.

    Args:
        gamma (float): scale of the margin (the paper's ``beta``). Default 0.1.
    """

    def __init__(self, gamma: float = 0.1):
        super().__init__()
        self.gamma = gamma

    def forward(
        self,
        policy_chosen_logps: torch.Tensor,
        policy_rejected_logps: torch.Tensor,
        reference_chosen_logps: torch.Tensor,
        reference_rejected_logps: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-pair hinge loss and implicit rewards.

        Args:
            policy_chosen_logps (torch.Tensor): ``[b]`` summed log-probs of the chosen responses.
            policy_rejected_logps (torch.Tensor): ``[b]`` the same for the rejected responses.
            reference_chosen_logps (torch.Tensor): ``[b]`` chosen, under the reference model.
            reference_rejected_logps (torch.Tensor): ``[b]`` rejected, under the reference model.

        Returns:
            Tuple[torch.Tensor, torch.Tensor, torch.Tensor]: losses, chosen rewards
            ``gamma (log pi - log ref)`` and rejected rewards, each ``[b]`` (rewards detached).

        Raises:
            ValueError: if the four inputs differ in shape.
        """
        _check_same_shape(
            policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
            reference_chosen_logps=reference_chosen_logps, reference_rejected_logps=reference_rejected_logps,
        )
        chosen_ratio = policy_chosen_logps - reference_chosen_logps
        rejected_ratio = policy_rejected_logps - reference_rejected_logps
        losses = torch.relu(1 - self.gamma * (chosen_ratio - rejected_ratio))
        return losses, self.gamma * chosen_ratio.detach(), self.gamma * rejected_ratio.detach()


class SimPOLoss(nn.Module):
    """Simple Preference Optimization (Meng et al., 2024, https://arxiv.org/abs/2405.14734), reference-free.

    The reward is ``beta`` times the length-normalised log-prob; the loss per pair is
    ``-(1 - eps) log sigmoid(beta (a_w - a_l) - gamma) - eps log sigmoid(-(beta (a_w - a_l) - gamma))``
    with ``a`` the average log-prob per response token and ``gamma`` a target reward margin.

    Args:
        beta (float): reward scale. Default 2.0.
        gamma (float): target reward margin. Default 0.5.
        label_smoothing (float): assumed label-flip probability, in ``[0, 0.5)``. Default 0.0.

    Raises:
        ValueError: if ``label_smoothing`` is outside ``[0, 0.5)``.
    """

    def __init__(self, beta: float = 2.0, gamma: float = 0.5, label_smoothing: float = 0.0):
        super().__init__()
        if not 0.0 <= label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
        self.beta = beta
        self.gamma = gamma
        self.label_smoothing = label_smoothing

    def forward(self, policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor) -> _Out:
        """Per-pair SimPO loss and rewards.

        Args:
            policy_chosen_logps (torch.Tensor): ``[b]`` average log-prob per token of the chosen responses.
            policy_rejected_logps (torch.Tensor): ``[b]`` the same for the rejected responses.

        Returns:
            Tuple[torch.Tensor, torch.Tensor, torch.Tensor]: losses and the rewards ``beta a_w``, ``beta a_l``
            (detached), each ``[b]``.

        Raises:
            ValueError: if the inputs differ in shape.
        """
        _check_same_shape(policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps)
        margin = self.beta * (policy_chosen_logps - policy_rejected_logps) - self.gamma
        eps = self.label_smoothing
        losses = -(1 - eps) * F.logsigmoid(margin) - eps * F.logsigmoid(-margin)
        return losses, self.beta * policy_chosen_logps.detach(), self.beta * policy_rejected_logps.detach()


class ORPOLoss(nn.Module):
    """Odds Ratio Preference Optimization (Hong et al., 2024, https://arxiv.org/abs/2403.07691), reference-free.

    With ``a`` the average log-prob per response token and ``odds(a) = exp(a) / (1 - exp(a))``, the loss
    per pair is the chosen response's NLL plus the odds-ratio term:
    ``-a_w - beta log sigmoid(log odds(a_w) - log odds(a_l))``. The NLL here is per pair (each chosen
    response's mean token NLL), so every pair weighs the same whatever its length.

    Args:
        beta (float): weight of the odds-ratio term (the paper's ``lambda``). Default 0.1.
    """

    def __init__(self, beta: float = 0.1):
        super().__init__()
        self.beta = beta

    def forward(self, policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor) -> _Out:
        """Per-pair ORPO loss and rewards.

        Args:
            policy_chosen_logps (torch.Tensor): ``[b]`` average log-prob per token of the chosen responses (< 0).
            policy_rejected_logps (torch.Tensor): ``[b]`` the same for the rejected responses.

        Returns:
            Tuple[torch.Tensor, torch.Tensor, torch.Tensor]: losses and the rewards ``beta a_w``, ``beta a_l``
            (detached), each ``[b]``.

        Raises:
            ValueError: if the inputs differ in shape.
        """
        _check_same_shape(policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps)
        # log odds(a) = a - log(1 - exp(a)); log1p(-exp(a)) is exact for the small |a| of likely responses.
        log_odds = (policy_chosen_logps - torch.log1p(-torch.exp(policy_chosen_logps))) - (
            policy_rejected_logps - torch.log1p(-torch.exp(policy_rejected_logps))
        )
        losses = -policy_chosen_logps - self.beta * F.logsigmoid(log_odds)
        return losses, self.beta * policy_chosen_logps.detach(), self.beta * policy_rejected_logps.detach()
