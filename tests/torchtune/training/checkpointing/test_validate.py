import pytest
import torch
from torch import nn

from torchtune.training.checkpointing import validate_state_dict


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 3)
        self.lora_a = nn.Parameter(torch.zeros(2, 4))


def _sd():
    return {"proj.weight": torch.zeros(3, 4), "proj.bias": torch.zeros(3), "lora_a": torch.zeros(2, 4)}


def test_matching_state_dict_passes():
    validate_state_dict(_Tiny(), _sd())


def test_shape_mismatch_names_parameter_and_both_shapes():
    sd = _sd()
    sd["proj.weight"] = torch.zeros(5, 4)
    with pytest.raises(ValueError, match=r"proj\.weight: checkpoint has shape \[5, 4\], model expects \[3, 4\]"):
        validate_state_dict(_Tiny(), sd, source="/ckpt/model.safetensors")


def test_missing_and_unexpected_keys_are_named():
    sd = _sd()
    del sd["proj.bias"]
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"from /c does not match the model: missing keys: proj\.bias.*unexpected keys: extra\.weight"):
        validate_state_dict(_Tiny(), sd, source="/c")


def test_ignore_missing_predicate():
    sd = _sd()
    del sd["lora_a"]
    validate_state_dict(_Tiny(), sd, ignore_missing=lambda k: "lora_" in k)
    with pytest.raises(ValueError, match="lora_a"):
        validate_state_dict(_Tiny(), sd)
