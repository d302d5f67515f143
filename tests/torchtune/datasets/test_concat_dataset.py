import pytest

from torchtune.datasets import ConcatDataset, PackedDataset


def test_concat_indexing():
    ds = ConcatDataset([[0, 1], [], [2, 3, 4]])
    assert len(ds) == 5 and [ds[i] for i in range(5)] == [0, 1, 2, 3, 4] and ds[-1] == 4
    with pytest.raises(IndexError):
        ds[5]


def test_concat_rejects_mixed_packing():
    packed = PackedDataset([{"tokens": [1, 2], "labels": [1, 2]}], max_seq_len=4)
    assert ConcatDataset([packed, packed]).packed
    with pytest.raises(ValueError, match="cannot mix packed and unpacked"):
        ConcatDataset([packed, [{"tokens": [1], "labels": [1]}]])
    with pytest.raises(ValueError, match="at least one"):
        ConcatDataset([])
