import pytest
import torch

from torchtune.data import (
    CROSS_ENTROPY_IGNORE_IDX,
    left_pad_sequence,
    padded_collate,
    padded_collate_dpo,
    padded_collate_packed,
    padded_collate_sft,
)


def test_padded_collate_sft():
    batch = [{"tokens": [1, 2, 3], "labels": [-100, 2, 3]}, {"tokens": [4], "labels": [4]}]
    out = padded_collate_sft(batch, padding_idx=0)
    assert out["tokens"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert out["labels"].tolist() == [[-100, 2, 3], [4, -100, -100]]
    assert out["tokens"].dtype == out["labels"].dtype == torch.long
    out = padded_collate_sft(batch, padding_idx=7, ignore_idx=-1, pad_to_multiple_of=4)
    assert out["tokens"].tolist() == [[1, 2, 3, 7], [4, 7, 7, 7]]
    assert out["labels"][1].tolist() == [4, -1, -1, -1]


def test_padded_collate_dpo():
    batch = [{"chosen_input_ids": [1, 2], "chosen_labels": [-100, 2],
              "rejected_input_ids": [1, 3, 4], "rejected_labels": [-100, 3, 4]},
             {"chosen_input_ids": [5], "chosen_labels": [5], "rejected_input_ids": [6], "rejected_labels": [6]}]
    ids, labels = padded_collate_dpo(batch)
    assert ids.tolist() == [[1, 2, 0], [5, 0, 0], [1, 3, 4], [6, 0, 0]]
    assert labels.tolist() == [[-100, 2, -100], [5, -100, -100], [-100, 3, 4], [6, -100, -100]]


def test_left_pad_sequence():
    out = left_pad_sequence([torch.tensor([1, 2, 3]), torch.tensor([4])], batch_first=True, padding_value=-1)
    assert out.tolist() == [[1, 2, 3], [-1, -1, 4]]
    assert left_pad_sequence([torch.tensor([1, 2]), torch.tensor([3])]).tolist() == [[1, 0], [2, 3]]


def test_padded_collate_left_and_right():
    batch = [{"tokens": [1, 2], "labels": [1, 2], "id": 0}, {"tokens": [3], "labels": [3], "id": 1}]
    left = padded_collate(batch, pad_direction="left", padding_idx={"tokens": 0, "labels": -100})
    assert left["tokens"].tolist() == [[1, 2], [0, 3]] and left["labels"].tolist() == [[1, 2], [-100, 3]]
    assert left["id"] == [0, 1]
    right = padded_collate(batch, keys_to_pad=["tokens"], padding_idx=9)
    assert right["tokens"].tolist() == [[1, 2], [3, 9]] and right["labels"] == [[1, 2], [3]]
    with pytest.raises(ValueError, match="pad_direction"):
        padded_collate(batch, pad_direction="up")
    with pytest.raises(ValueError, match="padding_idx has no value for key 'labels'"):
        padded_collate(batch, padding_idx={"tokens": 0})


def test_padded_collate_packed_block_causal_mask():
    pack = {"tokens": torch.tensor([5, 6, 7, 8, 0]), "labels": torch.tensor([-100, 6, -100, 8, -100]),
            "input_pos": torch.tensor([0, 1, 0, 1, 0]), "seq_lens": torch.tensor([2, 2, 1])}
    out = padded_collate_packed([pack, pack])
    assert out["tokens"].shape == out["labels"].shape == out["input_pos"].shape == (2, 5)
    expected = torch.tensor([
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 0, 1, 0, 0],
        [0, 0, 1, 1, 0],
        [0, 0, 0, 0, 1],
    ], dtype=torch.bool)
    assert out["mask"].dtype == torch.bool and torch.equal(out["mask"][1], expected)
    assert CROSS_ENTROPY_IGNORE_IDX == -100
