"""LoRA / DoRA / QLoRA Llama2 against the base model, Hugging Face peft, and the merged checkpoint."""

import pytest
import torch

from tests.test_utils import TINY_LLAMA, make_hf_llama
from torchtune.models.convert_weights import hf_to_tune
from torchtune.models.llama2 import llama2, lora_llama2, lora_llama2_7b, qlora_llama2_7b
from torchtune.modules.low_precision import FrozenNF4Linear, is_nf4
from torchtune.modules.peft import (
    DoRALinear,
    LoRALinear,
    disable_adapter,
    get_adapter_params,
    get_merged_lora_ckpt,
    load_dora_magnitudes,
    set_trainable_params,
    validate_missing_and_unexpected_for_lora,
)

RANK, ALPHA = 4, 8.0
ALL_ATTN = ["q_proj", "k_proj", "v_proj", "output_proj"]


def _lora(lora_attn_modules=ALL_ATTN, mlp=True, output=True, dims=TINY_LLAMA, **kwargs):
    return lora_llama2(lora_attn_modules, mlp, output, **dims, lora_rank=RANK, lora_alpha=ALPHA, **kwargs)


def _train_adapters(model):
    """Give every adapter a non-trivial value, as training would."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoRALinear):
                module.lora_b.weight.normal_(0.0, 0.05)
            if isinstance(module, DoRALinear):
                module.magnitude.mul_(torch.empty_like(module.magnitude).uniform_(0.8, 1.2))
    return model


def _load_base(model, base_sd):
    missing, unexpected = model.load_state_dict(base_sd, strict=False)
    validate_missing_and_unexpected_for_lora(
        None, None, None, state_dict_keys=list(model.state_dict()), base_missing=missing, base_unexpected=unexpected
    )
    load_dora_magnitudes(model)
    return model


def _tokens(n=2, s=12):
    return torch.randint(0, TINY_LLAMA["vocab_size"], (n, s))


@pytest.mark.parametrize("use_dora", [False, True], ids=["lora", "dora"])
def test_fresh_adapters_give_the_base_model(use_dora):
    base = llama2(**TINY_LLAMA).eval()
    model = _load_base(_lora(use_dora=use_dora), base.state_dict()).eval()
    tokens = _tokens()
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), base(tokens), atol=1e-5, rtol=1e-5)


def _rope_rows(w, n_heads):
    """HF rotate-half rows -> interleaved rows within each head (for q/k outputs)."""
    head_dim = w.shape[0] // n_heads
    return w.view(n_heads, 2, head_dim // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


@pytest.mark.parametrize("use_dora", [False, True], ids=["lora", "dora"])
def test_logits_match_hf_with_peft_adapters(use_dora):
    from peft import LoraConfig, inject_adapter_in_model

    hf, dims = make_hf_llama(num_kv_heads=2)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    hf = inject_adapter_in_model(LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=targets, use_dora=use_dora), hf)
    torch.manual_seed(3)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.05)
            elif "lora_magnitude_vector" in name:
                p.mul_(torch.empty_like(p).uniform_(0.8, 1.2))
    hf_sd = hf.state_dict()
    base_sd = {k.replace(".base_layer", ""): v for k, v in hf_sd.items() if "lora_" not in k}
    ours_sd = hf_to_tune(base_sd, num_heads=dims["num_heads"], num_kv_heads=2, dim=dims["embed_dim"])
    names = {"q_proj": "attn.q_proj", "k_proj": "attn.k_proj", "v_proj": "attn.v_proj", "o_proj": "attn.output_proj",
             "gate_proj": "mlp.w1", "up_proj": "mlp.w3", "down_proj": "mlp.w2"}
    kinds = {"lora_A.default.weight": "lora_a.weight", "lora_B.default.weight": "lora_b.weight",
             "lora_magnitude_vector.default.weight": "magnitude"}
    for i in range(dims["num_layers"]):
        for hf_name, our_name in names.items():
            block = "self_attn" if hf_name in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
            for hf_kind, our_kind in kinds.items():
                key = f"model.layers.{i}.{block}.{hf_name}.{hf_kind}"
                if key not in hf_sd:
                    continue
                value = hf_sd[key]
                if hf_name in ("q_proj", "k_proj") and our_kind != "lora_a.weight":  # output rows
                    value = _rope_rows(value, dims["num_heads"] if hf_name == "q_proj" else 2)
                ours_sd[f"layers.{i}.{our_name}.{our_kind}"] = value
    ours = _lora(mlp=True, output=False, dims=dict(TINY_LLAMA, num_kv_heads=2), use_dora=use_dora)
    ours.load_state_dict(ours_sd, strict=True)
    tokens = _tokens(3, 20)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(tokens), hf.eval()(tokens).logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("use_dora", [False, True], ids=["lora", "dora"])
def test_merged_checkpoint_equals_unmerged_model(use_dora):
    model = _train_adapters(_lora(use_dora=use_dora)).eval()
    merged = get_merged_lora_ckpt(model.state_dict(), rank=RANK, alpha=ALPHA)
    plain = llama2(**TINY_LLAMA).eval()
    plain.load_state_dict(merged, strict=True)
    tokens = _tokens()
    with torch.no_grad():
        torch.testing.assert_close(plain(tokens), model(tokens), atol=1e-5, rtol=1e-5)


def test_disable_adapter_gives_the_base_model():
    base = llama2(**TINY_LLAMA).eval()
    model = _train_adapters(_load_base(_lora(use_dora=True), base.state_dict())).eval()
    tokens = _tokens()
    with torch.no_grad():
        assert not torch.allclose(model(tokens), base(tokens), atol=1e-3)
        with disable_adapter(model):
            torch.testing.assert_close(model(tokens), base(tokens), atol=1e-5, rtol=1e-5)


def test_only_adapter_params_train():
    model = _lora(["q_proj", "v_proj"], mlp=False, output=False)
    adapter = get_adapter_params(model)
    set_trainable_params(model, adapter)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == set(adapter)
    assert len(adapter) == 2 * 2 * TINY_LLAMA["num_layers"]
    model(_tokens()).sum().backward()
    assert all((p.grad is not None) == (n in adapter) for n, p in model.named_parameters())


@pytest.mark.parametrize(
    "modules, pattern",
    [(["q_proj", "value"], r"value.*valid choices.*'q_proj', 'k_proj', 'v_proj', 'output_proj'"),
     ("q_proj", "must be a list")],
)
def test_invalid_lora_attn_modules_raise(modules, pattern):
    with pytest.raises(ValueError, match=pattern):
        _lora(modules)


# --- QLoRA ---

QLORA_DIMS = dict(TINY_LLAMA, embed_dim=128, intermediate_dim=256)  # torchao's default NF4 blocks fit


def _base_linear_bytes(model):
    """Bytes of the transformer layers' base linear weights (NF4: all of its inner tensors)."""
    total = 0
    for name, p in model.named_parameters():
        if name.startswith("layers.") and name.endswith("weight") and "lora_" not in name and p.dim() == 2:
            if is_nf4(p):
                inner, _ = p.__tensor_flatten__()
                total += sum(getattr(p, n).nbytes for n in inner)
            else:
                total += p.nbytes
    return total


def _in_bf16(fn):
    torch.set_default_dtype(torch.bfloat16)
    try:
        return fn()
    finally:
        torch.set_default_dtype(torch.float32)


def test_qlora_base_weights_use_under_a_third_of_bf16_memory():
    lora = _in_bf16(lambda: _lora(["q_proj", "v_proj"], mlp=False, output=False, dims=QLORA_DIMS))
    qlora = _in_bf16(lambda: _lora(["q_proj", "v_proj"], mlp=False, output=False, dims=QLORA_DIMS, quantize_base=True))
    attn, mlp = qlora.layers[0].attn, qlora.layers[0].mlp
    assert type(attn.q_proj) is LoRALinear and is_nf4(attn.q_proj.weight)
    assert type(attn.k_proj) is FrozenNF4Linear and type(mlp.w1) is FrozenNF4Linear
    assert type(qlora.output) is torch.nn.Linear and qlora.output.weight.dtype == torch.bfloat16
    dense, quantized = _base_linear_bytes(lora), _base_linear_bytes(qlora)
    assert dense == 2 * 2 * (4 * 128 * 128 + 3 * 128 * 256)  # 2 layers, bf16
    assert quantized < dense / 3, (quantized, dense)


def _check_qlora_matches_dense_lora(device, dtype, use_dora):
    """A QLoRA model trains like a dense LoRA model holding its dequantized weights."""
    base_sd = llama2(**TINY_LLAMA).to(dtype).state_dict()
    torch.set_default_dtype(dtype)
    try:
        with device:  # built in place, as recipes do
            qlora = _train_adapters(_load_base(_lora(quantize_base=True, use_dora=use_dora), base_sd))
            lora = _lora(use_dora=use_dora)
    finally:
        torch.set_default_dtype(torch.float32)
    for layer in qlora.layers:
        assert is_nf4(layer.attn.k_proj.weight) and is_nf4(layer.mlp.w2.weight)
        assert layer.attn.k_proj.weight.device.type == device.type
    qlora_sd = qlora.state_dict()  # dense: the dequantized NF4 weights, via CPU
    assert not any(is_nf4(v) for v in qlora_sd.values())
    lora.load_state_dict(qlora_sd, strict=True)
    for model in (qlora, lora):
        set_trainable_params(model, get_adapter_params(model))
    tokens = _tokens().to(device)
    out, expected = qlora(tokens), lora(tokens)
    assert out.dtype == dtype
    fp32 = dtype == torch.float32
    torch.testing.assert_close(out, expected, **(dict(atol=1e-4, rtol=1e-4) if fp32 else dict(atol=0.1, rtol=0.05)))
    out.float().logsumexp(-1).mean().backward()
    expected.float().logsumexp(-1).mean().backward()
    q_params, l_params = get_adapter_params(qlora), get_adapter_params(lora)
    for name, p in q_params.items():
        assert p.grad.dtype == dtype
        g, ref = p.grad.float(), l_params[name].grad.float()
        assert (g - ref).norm() <= (1e-4 if fp32 else 0.05) * ref.norm() + 1e-6, name


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_qlora_forward_backward_on_cpu_match_dense_lora(dtype):
    _check_qlora_matches_dense_lora(torch.device("cpu"), dtype, use_dora=False)


@pytest.mark.gpu
@pytest.mark.parametrize("use_dora", [False, True], ids=["lora", "dora"])
def test_qlora_forward_backward_on_cuda_match_dense_lora(use_dora):
    _check_qlora_matches_dense_lora(torch.device("cuda"), torch.bfloat16, use_dora)


def test_qlora_merge_gives_a_dense_checkpoint_for_the_base_model():
    qlora = _train_adapters(_lora(quantize_base=True, use_dora=True)).eval()
    merged = get_merged_lora_ckpt(qlora.state_dict(), rank=RANK, alpha=ALPHA)
    plain = llama2(**TINY_LLAMA).eval()
    plain.load_state_dict(merged, strict=True)
    tokens = _tokens()
    with torch.no_grad():
        torch.testing.assert_close(plain(tokens), qlora(tokens), atol=1e-4, rtol=1e-4)


# --- model builders ---


def test_model_builders_on_meta():
    with torch.device("meta"):
        lora = lora_llama2_7b(["q_proj", "v_proj"], apply_lora_to_mlp=True, lora_rank=16, use_dora=True)
    # rank 16 on q, v and the 3 MLP layers of 32 layers, plus a DoRA magnitude per output row
    # (q, v and w2 have 4096 outputs, w1 and w3 11008)
    per_layer = 2 * 16 * (4096 + 4096) + 3 * 16 * (4096 + 11008) + 2 * 4096 + 2 * 11008 + 4096
    assert sum(p.numel() for p in lora.parameters()) == 6_738_415_616 + 32 * per_layer
    assert set(get_adapter_params(lora)) >= {
        f"layers.{i}.attn.{m}.lora_{ab}.weight" for i in range(32) for m in ("q_proj", "v_proj") for ab in "ab"
    }
    assert type(lora.layers[0].attn.k_proj) is torch.nn.Linear and lora.layers[0].mlp.w1.rank == 16

def test_qlora_model_builders_pass_quantize_base_and_the_size(monkeypatch):
    # Building QLoRA 7B quantizes 224 weights (seconds even on meta); its layers are covered above
    # at test size, so check what the plain-def builders pass to the component builder.
    import torchtune.models.llama2._model_builders as builders

    calls = []
    monkeypatch.setattr(builders, "lora_llama2", lambda *args, **kwargs: calls.append((args, kwargs)))
    qlora_llama2_7b(["q_proj"], lora_rank=4)
    builders.qlora_llama2_70b(["v_proj"], apply_lora_to_mlp=True)
    (args7, kw7), (args70, kw70) = calls
    assert args7 == (["q_proj"], False, False) and kw7["quantize_base"] and kw7["lora_rank"] == 4
    assert kw7["embed_dim"] == 4096 and kw7["num_layers"] == 32
    assert args70 == (["v_proj"], True, False) and kw70["quantize_base"] and kw70["num_kv_heads"] == 8
    assert lora_llama2_7b.__name__ == "lora_llama2_7b" and "QLoRA" in qlora_llama2_7b.__doc__


def test_qlora_built_on_meta_then_materialized_matches_a_direct_build():
    """The flow of memory-frugal recipes: build on meta, to_empty, load base weights, init adapters."""
    base_sd = llama2(**TINY_LLAMA).state_dict()
    direct = _load_base(_lora(quantize_base=True, use_dora=True), base_sd).eval()
    with torch.device("meta"):
        model = _lora(quantize_base=True, use_dora=True)
    model.to_empty(device="cpu")
    model.load_state_dict(base_sd, strict=False)
    for module in model.modules():
        if isinstance(module, LoRALinear):
            module.initialize_parameters()
        if hasattr(module, "rope_init"):
            module.rope_init()
    load_dora_magnitudes(model)
    tokens = _tokens()
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(tokens), direct(tokens), rtol=0, atol=0)
