import torch
from omegaconf import OmegaConf

from torchtune import training
from torchtune.modules.peft import LoRALinear


class _Attn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.q_proj = LoRALinear(4, 4, rank=2, alpha=4.0)
        self.v_proj = torch.nn.Linear(4, 4, bias=False)


_CFG = OmegaConf.create({"lora_rank": 2, "lora_alpha": 4.0, "lora_attn_modules": ["q_proj"]})


def test_lora_checkpoint_state_merges_and_describes_the_adapter():
    model = _Attn()
    with torch.no_grad():
        model.q_proj.lora_b.weight.normal_()
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state = training.lora_checkpoint_state(sd, _CFG)
    assert set(state[training.ADAPTER_KEY]) == {"q_proj.lora_a.weight", "q_proj.lora_b.weight"}
    assert state[training.ADAPTER_CONFIG]["r"] == 2 and state[training.ADAPTER_CONFIG]["peft_type"] == "LORA"
    expected = sd["q_proj.weight"] + (4.0 / 2) * sd["q_proj.lora_b.weight"] @ sd["q_proj.lora_a.weight"]
    torch.testing.assert_close(state[training.MODEL_KEY]["q_proj.weight"], expected)
    assert training.MODEL_KEY not in training.lora_checkpoint_state(sd, _CFG, adapter_only=True)


def test_load_lora_weights_resumed_adapters():
    source, target = _Attn(), _Attn()
    with torch.no_grad():
        source.q_proj.lora_b.weight.fill_(0.5)
    sd = source.state_dict()
    base = {k: v for k, v in sd.items() if "lora" not in k}
    adapter = {k: v for k, v in sd.items() if "lora" in k}
    load = lambda d: target.load_state_dict(d, strict=False)  # noqa: E731
    training.load_lora_weights(target, load, _CFG, base_state_dict=base, adapter_state_dict=adapter,
                               fresh_adapters=None)
    torch.testing.assert_close(target.q_proj.lora_b.weight, torch.full((4, 2), 0.5))
