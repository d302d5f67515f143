import pytest

from torchtune.data import truncate


def test_truncate():
    assert truncate([1, 2, 3], 5, eos_id=9) == [1, 2, 3]  # fits: unchanged, no EOS forced
    assert truncate([1, 2, 3, 4], 3) == [1, 2, 3]
    assert truncate([1, 2, 3, 4], 3, eos_id=9) == [1, 2, 9]
    assert truncate([1, 2, 3, 4], 3, truncation_type="left") == [2, 3, 4]
    with pytest.raises(ValueError, match="truncation_type"):
        truncate([1], 1, truncation_type="middle")
