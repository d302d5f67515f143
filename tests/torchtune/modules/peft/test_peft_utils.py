import pytest
import torch
from torch import nn

from torchtune.modules.peft import (
    AdapterModule,
    DoRALinear,
    LoRALinear,
    disable_adapter,
    get_adapter_params,
    get_adapter_state_dict,
    get_lora_module_names,
    load_dora_magnitudes,
    set_trainable_params,
    validate_missing_and_unexpected_for_lora,
)


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj = LoRALinear(16, 16, rank=2, alpha=4)
        self.k_proj = nn.Linear(16, 16, bias=False)
        self.w1 = DoRALinear(16, 32, rank=2, alpha=4)
        self.norm = nn.LayerNorm(16)


def _model():
    model = nn.Sequential(_Block(), _Block())
    for m in model.modules():
        if isinstance(m, LoRALinear):
            nn.init.normal_(m.lora_b.weight)
    return model


def test_adapter_module_protocol():
    assert isinstance(LoRALinear(8, 8, 2, 4), AdapterModule)
    assert isinstance(DoRALinear(8, 8, 2, 4), AdapterModule)
    assert not isinstance(nn.Linear(8, 8), AdapterModule)


def test_get_adapter_params_and_set_trainable_params():
    model = _model()
    params = get_adapter_params(model)
    assert sorted(params) == sorted(
        f"{i}.{n}" for i in (0, 1)
        for n in ("q_proj.lora_a.weight", "q_proj.lora_b.weight", "w1.lora_a.weight", "w1.lora_b.weight", "w1.magnitude")
    )
    named = dict(model.named_parameters())
    assert all(params[k] is named[k] for k in params)
    set_trainable_params(model, params)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(params)


def test_get_adapter_params_on_a_bare_adapter_module():
    layer = LoRALinear(8, 8, 2, 4)
    assert set(get_adapter_params(layer)) == {"lora_a.weight", "lora_b.weight"}


def test_set_trainable_params_rejects_unknown_names():
    with pytest.raises(ValueError, match="0.q_proj.lora_c.weight"):
        set_trainable_params(_model(), {"0.q_proj.lora_c.weight": None})


def test_get_adapter_state_dict_keeps_exactly_the_adapter_entries():
    model = _model()
    adapter_sd = get_adapter_state_dict(model.state_dict())
    assert set(adapter_sd) == set(get_adapter_params(model))
    assert all(v.device.type == "cpu" for v in adapter_sd.values())


def test_disable_adapter_gives_the_base_model_and_restores_flags():
    torch.manual_seed(0)
    model = _model()
    model[1].q_proj.disabled = True  # an already disabled module stays disabled afterwards
    x = torch.randn(3, 16)

    def base(block, h):
        return block.q_proj.weight @ h.T, block.w1.weight @ h.T

    with disable_adapter(model):
        for block in model:
            q, w1 = base(block, x)
            torch.testing.assert_close(block.q_proj(x), q.T)
            torch.testing.assert_close(block.w1(x), w1.T)
    assert model[0].q_proj.disabled is False and model[1].q_proj.disabled is True
    assert not torch.allclose(model[0].q_proj(x), base(model[0], x)[0].T)
    with pytest.raises(RuntimeError):
        with disable_adapter(model):
            raise RuntimeError("boom")
    assert model[0].w1.disabled is False


def test_load_dora_magnitudes_sets_every_magnitude():
    model = _model()
    with torch.no_grad():
        for block in model:
            block.w1.weight.mul_(2.0)
    load_dora_magnitudes(model)
    for block in model:
        w = block.w1.weight + block.w1.scaling * block.w1.lora_b.weight @ block.w1.lora_a.weight
        torch.testing.assert_close(block.w1.magnitude, w.norm(dim=1))


def test_get_lora_module_names():
    assert get_lora_module_names(["q_proj", "v_proj"], False, False) == ["q_proj", "v_proj"]
    assert get_lora_module_names(["q_proj"], True, True) == ["q_proj", "w1", "w2", "w3", "output"]
    assert get_lora_module_names([], True, False) == ["w1", "w2", "w3"]


@pytest.mark.parametrize(
    "modules, pattern",
    [
        (["q_proj", "v_porj"], r"v_porj.*'q_proj', 'k_proj', 'v_proj', 'output_proj'"),
        ("q_proj", "must be a list"),
        ([], "No layer selected"),
    ],
)
def test_get_lora_module_names_rejects_bad_input(modules, pattern):
    with pytest.raises(ValueError, match=pattern):
        get_lora_module_names(modules, False, False)


def test_validate_accepts_a_correct_load():
    model = _model()
    adapter_keys = set(get_adapter_params(model))
    base_sd = {k: v for k, v in model.state_dict().items() if k not in adapter_keys}
    fresh = _model()
    base_missing, base_unexpected = fresh.load_state_dict(base_sd, strict=False)
    lora_missing, lora_unexpected = fresh.load_state_dict(get_adapter_state_dict(model.state_dict()), strict=False)
    validate_missing_and_unexpected_for_lora(
        ["q_proj"], True, False,
        base_missing=base_missing, base_unexpected=base_unexpected,
        lora_missing=lora_missing, lora_unexpected=lora_unexpected,
    )
    validate_missing_and_unexpected_for_lora(
        None, None, None,
        state_dict_keys=list(model.state_dict()),
        base_missing=base_missing, base_unexpected=base_unexpected,
        lora_missing=lora_missing, lora_unexpected=lora_unexpected,
    )


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(base_missing=["0.q_proj.lora_a.weight", "0.k_proj.weight"]), r"base model .*lacks non-adapter weights: 0\.k_proj\.weight$"),
        (dict(base_unexpected=["extra.weight"]), r"base model checkpoint has keys the model does not: extra\.weight"),
        (dict(lora_missing=["0.k_proj.weight", "1.w1.magnitude"]), r"adapter checkpoint lacks adapter weights: 1\.w1\.magnitude$"),
        (dict(lora_unexpected=["0.q_proj.lora_c.weight"]), r"adapter checkpoint has keys .*0\.q_proj\.lora_c\.weight"),
    ],
)
def test_validate_names_the_offending_keys(kwargs, pattern):
    with pytest.raises(RuntimeError, match=pattern):
        validate_missing_and_unexpected_for_lora(["q_proj"], True, False, **kwargs)


def test_validate_uses_the_configured_layers():
    # v_proj is not adapted in this configuration, so a missing v_proj LoRA weight is not an adapter key
    with pytest.raises(RuntimeError, match="v_proj.lora_a.weight"):
        validate_missing_and_unexpected_for_lora(["q_proj"], False, False, base_missing=["0.v_proj.lora_a.weight"])
    validate_missing_and_unexpected_for_lora(["q_proj", "v_proj"], False, False, base_missing=["0.v_proj.lora_a.weight"])


def test_validate_shortens_long_key_lists():
    keys = [f"layers.{i}.attn.k_proj.weight" for i in range(25)]
    with pytest.raises(RuntimeError, match=r"and 15 more"):
        validate_missing_and_unexpected_for_lora(None, None, None, base_missing=keys)
