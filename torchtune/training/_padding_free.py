"""Padding-free micro-batches: the real tokens of a padded batch laid end to end in one row.

A right-padded batch ``[b, s]`` spends ``b * s`` tokens of every matmul although only the real
tokens carry a loss. After the labels are shifted, a position whose label, and every later
position's label in its row, is ignored cannot change the loss or any gradient (causal
attention: no earlier position reads it). Each row is therefore cut after its last trained
position and the rows are concatenated into ``[1, T]``; positions restart at 0 in every row and a
``DocumentMask`` keeps attention within each row. Summed loss and gradients are those of the
padded batch, up to floating-point summation order.
"""

from typing import Dict, Optional

import torch
from torch import nn

from torchtune.modules.attention_utils import DocumentMask
from torchtune.modules.transformer import TransformerDecoder


def supports_padding_free(model: nn.Module) -> bool:
    """Whether ``model`` trains on padding-free batches with the same result as on padded ones.

    True for a ``TransformerDecoder`` (also with compiled layers, or layers wrapped for activation
    checkpointing or FSDP) whose layers are all self-attention layers of ``MultiHeadAttention``,
    without memory tokens or enabled KV caches. Compiled layers compile once for all batches: the
    per-document attention is left out of their graphs.

    Args:
        model (nn.Module): the model a recipe trains.

    Returns:
        bool
    """
    model = getattr(model, "_orig_mod", model)
    if not isinstance(model, TransformerDecoder) or model.memory_tokens is not None or model.caches_are_enabled():
        return False
    return model._layers_take_document_masks()


def remove_padding(
    tokens: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100
) -> Optional[Dict[str, object]]:
    """The padding-free form of a right-padded micro-batch.

    Args:
        tokens (torch.Tensor): ``[b, s]`` token ids.
        labels (torch.Tensor): ``[b, s]`` labels already shifted (``shift_labels``), ``ignore_index``
            where nothing is trained.
        ignore_index (int): label of untrained positions. Default -100.

    Returns:
        Optional[Dict[str, object]]: ``tokens`` and ``labels`` ``[1, T]``, ``input_pos`` ``[1, T]``
        (restarting per row) and ``mask`` (a ``DocumentMask`` of the kept row lengths); rows
        without a trained token are left out. None if the batch has no trained token.

    Raises:
        ValueError: if ``tokens`` and ``labels`` differ in shape or are not 2-D.
    """
    if tokens.dim() != 2 or tokens.shape != labels.shape:
        raise ValueError(f"tokens {tuple(tokens.shape)} and labels {tuple(labels.shape)} must both be [b, s]")
    trained = labels != ignore_index  # [b, s]
    s = labels.shape[1]
    # Length to keep per row: up to and including its last trained position (0 if none).
    last = s - trained.flip(1).to(torch.int8).argmax(dim=1)
    keep_len = torch.where(trained.any(dim=1), last, torch.zeros_like(last))
    lens = [n for n in keep_len.tolist() if n > 0]  # the one host read of the step's lengths
    if not lens:
        return None
    keep = torch.arange(s, device=tokens.device)[None, :] < keep_len[:, None]  # [b, s]
    mask = DocumentMask(lens)
    return {
        "tokens": tokens[keep][None],
        "labels": labels[keep][None],
        "input_pos": mask.input_pos(tokens.device),
        "mask": mask,
    }
