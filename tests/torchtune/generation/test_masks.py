"""Padding-aware masks and positions, checked against element-by-element definitions."""

import pytest
import torch

from torchtune.generation import get_causal_mask_from_padding_mask, get_position_ids_from_padding_mask

PADDING = torch.tensor(
    [
        [False, False, True, True, True],
        [True, True, True, True, True],
        [False, False, False, False, True],
    ]
)


def _expected_mask(padding, target):
    b, s = padding.shape
    out = torch.zeros(b, s, target, dtype=torch.bool)
    for i in range(b):
        for q in range(s):
            for k in range(target):
                out[i, q, k] = (k == q) or (k < q and bool(padding[i, k]))
    return out


@pytest.mark.parametrize("target", [None, 8])
def test_causal_mask_hides_padding_and_keeps_diagonal(target):
    mask = get_causal_mask_from_padding_mask(PADDING, target_seq_len=target)
    expected = _expected_mask(PADDING, target or PADDING.shape[1])
    assert mask.dtype == torch.bool
    assert torch.equal(mask, expected)
    # No empty rows: an empty row would make SDPA produce NaN.
    assert mask.any(dim=-1).all()


def test_causal_mask_rejects_short_target_and_bad_shape():
    with pytest.raises(ValueError, match="target_seq_len"):
        get_causal_mask_from_padding_mask(PADDING, target_seq_len=3)
    with pytest.raises(ValueError, match=r"\[b, s\]"):
        get_causal_mask_from_padding_mask(PADDING[0])


def test_positions_start_at_first_real_token():
    expected = torch.tensor([[0, 0, 0, 1, 2], [0, 1, 2, 3, 4], [0, 0, 0, 0, 0]])
    pos = get_position_ids_from_padding_mask(PADDING)
    assert pos.dtype == torch.long
    assert torch.equal(pos, expected)
