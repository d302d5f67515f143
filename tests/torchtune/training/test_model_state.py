import pytest
import torch

from tests.test_utils import TINY_LLAMA
from torchtune.models.llama2 import llama2
from torchtune.modules import TransformerSelfAttentionLayer
from torchtune.training import load_model_state_dict, set_activation_checkpointing


def test_loads_through_checkpoint_wrappers():
    source = llama2(**TINY_LLAMA)
    target = llama2(**TINY_LLAMA)
    set_activation_checkpointing(target, {TransformerSelfAttentionLayer})
    load_model_state_dict(target, source.state_dict())
    for (name, want), got in zip(source.state_dict().items(), target.state_dict().values()):
        torch.testing.assert_close(got, want, msg=name)


def test_mismatch_lists_keys():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    state = {"0.weight": torch.zeros(2, 2), "1.weight": torch.zeros(2, 2)}
    with pytest.raises(ValueError, match=r"missing keys: 0.bias \| unexpected keys: 1.weight"):
        load_model_state_dict(model, state)
    load_model_state_dict(model, state, strict=False)
    assert torch.count_nonzero(model[0].weight) == 0
    with pytest.raises(ValueError, match=r"0.weight: checkpoint has shape \[3, 2\], model expects \[2, 2\]"):
        load_model_state_dict(model, {"0.weight": torch.zeros(3, 2), "0.bias": torch.zeros(2)})
