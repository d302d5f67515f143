"""Collate functions: lists of samples -> padded batch tensors."""

from typing import Any, Dict, List, Mapping, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence

from torchtune.data._common import CROSS_ENTROPY_IGNORE_IDX
from torchtune.modules.attention_utils import packed_block_causal_mask


def left_pad_sequence(
    sequences: Sequence[torch.Tensor], batch_first: bool = False, padding_value: float = 0
) -> torch.Tensor:
    """Like ``torch.nn.utils.rnn.pad_sequence`` but pads on the left, so that all sequences
    end at the last position (what batched generation needs).

    Args:
        sequences (Sequence[torch.Tensor]): tensors ``[s_i, *]``.
        batch_first (bool): return ``[b, s, *]`` instead of ``[s, b, *]``. Default False.
        padding_value (float): fill value. Default 0.

    Returns:
        torch.Tensor: ``[b, s, *]`` if ``batch_first`` else ``[s, b, *]``, ``s = max(s_i)``.
    """
    # Flipping keeps this to one pad_sequence call (its padding_side argument needs torch >= 2.6).
    padded = pad_sequence([s.flip(0) for s in sequences], batch_first=True, padding_value=padding_value).flip(1)
    return padded if batch_first else padded.transpose(0, 1)


def _as_long(x: Any) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.tensor(x, dtype=torch.long)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def padded_collate_sft(
    batch: List[Mapping[str, Any]],
    padding_idx: int = 0,
    ignore_idx: int = CROSS_ENTROPY_IGNORE_IDX,
    pad_to_multiple_of: int = 1,
) -> Dict[str, torch.Tensor]:
    """Right-pad ``tokens`` and ``labels`` of SFT samples to the longest sample of the batch.

    Args:
        batch (List[Mapping[str, Any]]): samples with ``tokens`` and ``labels`` (lists or 1-D tensors).
        padding_idx (int): token id used for padding. Default 0.
        ignore_idx (int): label used for padding. Default -100.
        pad_to_multiple_of (int): round the padded length up to a multiple of this (helps
            kernels and ``torch.compile``). Default 1.

    Returns:
        Dict[str, torch.Tensor]: ``tokens`` and ``labels``, both LongTensor ``[b, s]``.
    """
    tokens = [_as_long(x["tokens"]) for x in batch]
    labels = [_as_long(x["labels"]) for x in batch]
    seq_len = _round_up(max(max(t.numel() for t in tokens), max(lb.numel() for lb in labels)), pad_to_multiple_of)
    return {
        "tokens": torch.stack([F.pad(t, (0, seq_len - t.numel()), value=padding_idx) for t in tokens]),
        "labels": torch.stack([F.pad(lb, (0, seq_len - lb.numel()), value=ignore_idx) for lb in labels]),
    }


def padded_collate_packed(batch: List[Mapping[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """Stack packs from :class:`~torchtune.datasets.PackedDataset` and build their attention mask.

    Args:
        batch (List[Mapping[str, torch.Tensor]]): packs with ``tokens``, ``labels``,
            ``input_pos`` (each ``[s]``) and ``seq_lens`` (document lengths summing to ``s``).

    Returns:
        Dict[str, torch.Tensor]: ``tokens``, ``labels``, ``input_pos`` ``[b, s]`` and ``mask``,
        a boolean block-causal mask ``[b, s, s]`` (True = may attend): a token sees earlier
        tokens of its own document only.
    """
    return {
        "tokens": torch.stack([x["tokens"] for x in batch]),
        "labels": torch.stack([x["labels"] for x in batch]),
        "input_pos": torch.stack([x["input_pos"] for x in batch]),
        "mask": packed_block_causal_mask([x["seq_lens"] for x in batch]),
    }


def padded_collate_dpo(
    batch: List[Mapping[str, List[int]]],
    padding_idx: int = 0,
    ignore_idx: int = CROSS_ENTROPY_IGNORE_IDX,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pad preference pairs into one batch: the chosen sequences first, then the rejected ones.

    Args:
        batch (List[Mapping[str, List[int]]]): samples with ``chosen_input_ids``,
            ``chosen_labels``, ``rejected_input_ids`` and ``rejected_labels``.
        padding_idx (int): token id used for padding. Default 0.
        ignore_idx (int): label used for padding. Default -100.

    Returns:
        Tuple[torch.Tensor, torch.Tensor]: input ids and labels, LongTensor ``[2 * b, s]``; rows
        ``[:b]`` are the chosen sequences and rows ``[b:]`` the rejected ones.
    """
    flat = [{"tokens": x["chosen_input_ids"], "labels": x["chosen_labels"]} for x in batch]
    flat += [{"tokens": x["rejected_input_ids"], "labels": x["rejected_labels"]} for x in batch]
    out = padded_collate_sft(flat, padding_idx=padding_idx, ignore_idx=ignore_idx)
    return out["tokens"], out["labels"]


def padded_collate(
    batch: List[Mapping[str, Any]],
    *,
    pad_direction: str = "right",
    keys_to_pad: Sequence[str] = ("tokens", "labels"),
    padding_idx: Union[int, Mapping[str, int]] = 0,
) -> Dict[str, Any]:
    """Pad chosen keys of a batch to the longest sample, on the left or the right.

    Left padding is what generation needs: every prompt then ends at the last position.

    Args:
        batch (List[Mapping[str, Any]]): samples; keys in ``keys_to_pad`` hold 1-D sequences.
        pad_direction (str): ``"left"`` or ``"right"``. Default ``"right"``.
        keys_to_pad (Sequence[str]): keys to pad. Default ``("tokens", "labels")``.
        padding_idx (Union[int, Mapping[str, int]]): one fill value, or one per key. Default 0.

    Returns:
        Dict[str, Any]: each padded key as a ``[b, s]`` tensor; other keys are stacked when they
        are tensors of one shape, else returned as a list.

    Raises:
        ValueError: on a bad ``pad_direction``, or a key missing from ``batch`` or ``padding_idx``.
    """
    if pad_direction not in ("left", "right"):
        raise ValueError(f"pad_direction must be 'left' or 'right', got {pad_direction!r}")
    out: Dict[str, Any] = {}
    for key in batch[0]:
        values = [x[key] for x in batch]
        if key in keys_to_pad:
            if isinstance(padding_idx, Mapping):
                if key not in padding_idx:
                    raise ValueError(f"padding_idx has no value for key {key!r}; it has {sorted(padding_idx)}")
                fill = padding_idx[key]
            else:
                fill = padding_idx
            seqs = [_as_long(v) for v in values]
            out[key] = left_pad_sequence(seqs, batch_first=True, padding_value=fill) if pad_direction == "left" \
                else pad_sequence(seqs, batch_first=True, padding_value=fill)
        elif all(isinstance(v, torch.Tensor) for v in values) and len({v.shape for v in values}) == 1:
            out[key] = torch.stack(values)
        else:
            out[key] = values
    missing = [k for k in keys_to_pad if k not in out]
    if missing:
        raise ValueError(f"keys_to_pad {missing} not found in the batch; it has keys {sorted(batch[0])}")
    return out
