"""Log-probabilities of sequences under a model, and truncation of generated sequences."""
from typing import Tuple

import torch
import torch.nn.functional as F

from torchtune.data import CROSS_ENTROPY_IGNORE_IDX


def truncate_sequence_at_first_stop_token(
    sequences: torch.Tensor, stop_tokens: torch.Tensor, fill_value: int = 0
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mask and fill every position after the first stop token of each sequence.

    The first stop token itself is kept; sequences without one are left whole.

    Args:
        sequences (torch.Tensor): token ids, shape ``[b, s]``.
        stop_tokens (torch.Tensor): ids that end a sequence, shape ``[n]``.
        fill_value (int): id written after the first stop token. Default 0.

    Returns:
        Tuple[torch.Tensor, torch.Tensor]: ``padding_mask`` (``[b, s]`` bool, True after the first
        stop token) and the filled sequences (``[b, s]``, a new tensor).
    """
    is_stop = torch.isin(sequences, stop_tokens.to(sequences.device))
    # Stops seen up to and including each position: > 1, or 1 on a non-stop, means "after the first".
    seen = torch.cumsum(is_stop.long(), dim=1)
    padding_mask = (seen > 1) | ((seen == 1) & ~is_stop)
    return padding_mask, sequences.masked_fill(padding_mask, fill_value)


def logits_to_logprobs(logits: torch.Tensor, sequences: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Log-probability of each token of ``sequences`` under ``logits`` scaled by ``1 / temperature``.

    Args:
        logits (torch.Tensor): ``[b, s, v]``; position ``i`` scores token ``sequences[:, i]``.
        sequences (torch.Tensor): token ids, shape ``[b, s]``.
        temperature (float): softmax temperature the tokens were sampled with. Default 1.0.

    Returns:
        torch.Tensor: ``[b, s]`` log-probabilities.

    Raises:
        ValueError: if ``temperature`` is not positive.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    logprobs = torch.log_softmax(logits.float() / temperature, dim=-1)
    return torch.gather(logprobs, 2, sequences.unsqueeze(-1)).squeeze(-1)


def get_batch_log_probs(
    logits: torch.FloatTensor,
    labels: torch.LongTensor,
    label_pad_token_id: int = CROSS_ENTROPY_IGNORE_IDX,
    return_average_logprobs: bool = False,
) -> torch.FloatTensor:
    """Summed (or averaged) log-probability of each sequence's labelled tokens.

    Labels are shifted here: the logits at position ``i`` score ``labels[:, i + 1]``, as in a
    causal LM's training loss; positions labelled ``label_pad_token_id`` (prompt, padding) are left out.

    Args:
        logits (torch.FloatTensor): ``[b, s, v]`` model outputs.
        labels (torch.LongTensor): ``[b, s]`` unshifted labels.
        label_pad_token_id (int): label of positions to leave out. Default -100.
        return_average_logprobs (bool): divide by the number of labelled tokens. Default False.

    Returns:
        torch.FloatTensor: ``[b]`` log-probabilities (0 for a sequence with no labelled token when summing).

    Raises:
        ValueError: if ``logits`` and ``labels`` disagree on batch or sequence size.
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} need the same [b, s]")
    labels = labels[:, 1:]
    logits = logits[:, :-1]
    mask = labels != label_pad_token_id
    token_logprobs = torch.gather(
        torch.log_softmax(logits.float(), dim=-1), 2, labels.masked_fill(~mask, 0).unsqueeze(-1)
    ).squeeze(-1)
    total = (token_logprobs * mask).sum(-1)
    if return_average_logprobs:
        return total / mask.sum(-1).clamp(min=1)
    return total


def truncate_sequence_for_logprobs(query_response_logits: torch.Tensor, context_length: int) -> torch.Tensor:
    """Logits that score the response tokens of a ``[query; response]`` forward pass.

    The logits at position ``i`` predict token ``i + 1``, so the response (which starts at
    ``context_length``) is scored by positions ``context_length - 1`` to the second to last.

    Args:
        query_response_logits (torch.Tensor): ``[b, context_length + response_length, v]``.
        context_length (int): length of the query part, at least 1.

    Returns:
        torch.Tensor: ``[b, response_length, v]``.

    Raises:
        ValueError: if ``context_length`` is below 1.
    """
    if context_length < 1:
        raise ValueError(f"context_length must be at least 1, got {context_length}")
    return query_response_logits[:, context_length - 1 : -1]
