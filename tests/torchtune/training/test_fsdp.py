"""FSDP2 unit policy and meta-device checks (single process; sharding itself is tested on 2 ranks
in test_distributed_state.py and by the distributed recipe tests)."""
import pytest
import torch
from torch import nn

from torchtune.training import get_shard_conditions, validate_no_params_on_meta_device


def test_shard_conditions_pick_layers_and_named_modules():
    m = nn.Linear(2, 2)
    assert get_shard_conditions("layers.0", m)
    assert get_shard_conditions("model.layers.11", m)
    assert not get_shard_conditions("layers.0.attn", m)
    assert not get_shard_conditions("layers", m)
    assert not get_shard_conditions("output", m)
    assert get_shard_conditions("output", m, names_to_match=["tok_embeddings", "output"])


def test_nf4_weights_that_cannot_split_evenly_are_detected():
    from torchtune.modules.low_precision import to_nf4
    from torchtune.training._fsdp import _nf4_shards_evenly

    big = to_nf4(torch.randn(256, 256))  # 1024 blocks of 64 -> 4 second-level scaler groups
    small = to_nf4(torch.randn(64, 64))  # one scaler group: cannot be split
    assert _nf4_shards_evenly(big, 2) and _nf4_shards_evenly(big, 4)
    assert not _nf4_shards_evenly(big, 3)
    assert not _nf4_shards_evenly(small, 2)


def test_meta_tensors_left_after_loading_are_named():
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    model[0].weight = nn.Parameter(torch.zeros(2, 2))
    with pytest.raises(RuntimeError, match=r"0\.bias.*1\.weight"):
        validate_no_params_on_meta_device(model)
    validate_no_params_on_meta_device(nn.Linear(2, 2))


def test_cpu_offload_without_an_accelerator_is_refused():
    from torchtune.training import shard_model

    if torch.accelerator.is_available():
        pytest.skip("an accelerator is present")
    with pytest.raises(ValueError, match="fsdp_cpu_offload=True needs an accelerator"):
        shard_model(nn.Sequential(nn.Linear(2, 2)), [lambda n, m: True], cpu_offload=True)
