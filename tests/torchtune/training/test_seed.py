import os
import random

import numpy as np
import pytest
import torch

from torchtune.training import set_seed


def _draws():
    return random.random(), float(np.random.rand()), torch.rand(1).item()


def test_same_seed_same_draws():
    assert set_seed(1234) == 1234
    first = _draws()
    set_seed(1234)
    assert _draws() == first
    assert os.environ["PYTHONHASHSEED"] == "1234"
    set_seed(4321)
    assert _draws() != first


def test_random_seed_is_returned_and_reproducible():
    seed = set_seed()
    assert 0 <= seed < 2**32
    first = _draws()
    set_seed(seed)
    assert _draws() == first


def test_invalid_seed_and_debug_mode():
    with pytest.raises(ValueError, match="out of range"):
        set_seed(-1)
    with pytest.raises(ValueError, match="out of range"):
        set_seed(2**32)
    with pytest.raises(ValueError, match="debug_mode"):
        set_seed(0, debug_mode="loud")


def test_debug_mode_sets_deterministic_algorithms(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)  # restored after the test
    try:
        set_seed(0, debug_mode="warn")
        assert torch.get_deterministic_debug_mode() == 1
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        set_seed(0, debug_mode=2)
        assert torch.get_deterministic_debug_mode() == 2
    finally:
        set_seed(0, debug_mode="default")
    assert torch.get_deterministic_debug_mode() == 0
    assert not torch.backends.cudnn.deterministic
