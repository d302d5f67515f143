"""torchao quantizers: effective weights against hand-computed quantization grids, logits and
greedy generation against the float model, save / weights_only reload, and mismatch errors."""

import copy
import io

import pytest
import torch
from torch import nn

from tests.test_utils import make_hf_llama
from torchtune.generation import generate
from torchtune.models.convert_weights import hf_to_tune
from torchtune.models.llama2 import llama2
from torchtune.training.quantization import (
    get_quantizer_mode,
    Int4WeightOnlyQuantizer,
    Int8DynActInt4WeightQuantizer,
    Int8WeightOnlyQuantizer,
    load_quantized_model,
    validate_quantized_state_dict,
)

# Stated tolerance of int8 weight-only quantization on the tiny random model: relative L2 error of
# the logits (measured about 0.017). int4 with groups of 32 is much coarser (about 0.24).
INT8_LOGITS_RTOL = 0.03
INT4_LOGITS_RTOL = 0.35


@pytest.fixture(scope="module")
def float_model():
    ref, dims = make_hf_llama(num_kv_heads=2)
    model = llama2(
        vocab_size=dims["vocab_size"], num_layers=dims["num_layers"], num_heads=dims["num_heads"],
        num_kv_heads=2, embed_dim=dims["embed_dim"], max_seq_len=dims["max_seq_len"],
        intermediate_dim=dims["intermediate_dim"], norm_eps=dims["norm_eps"],
    ).eval()
    model.load_state_dict(hf_to_tune(ref.state_dict(), num_heads=dims["num_heads"], num_kv_heads=2,
                                     dim=dims["embed_dim"]))
    return model


def _effective_weight(linear: nn.Linear) -> torch.Tensor:
    # What the quantized layer really multiplies by, read through its own forward.
    with torch.no_grad():
        return linear(torch.eye(linear.in_features)).t()


def _relative_error(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_int8_weights_sit_on_the_symmetric_per_row_grid():
    torch.manual_seed(0)
    linear = nn.Linear(128, 96, bias=False)
    w = linear.weight.detach().clone()
    Int8WeightOnlyQuantizer().quantize(linear)
    step = w.abs().amax(dim=1, keepdim=True) / 127.5  # 256 levels spanning [-amax, amax]
    err = (_effective_weight(linear) - w).abs()
    assert (err <= step / 2 + 1e-7).all()
    assert err.max() > step.min() / 100  # really quantized, not a float copy


def test_int4_weights_sit_on_the_asymmetric_group_grid():
    torch.manual_seed(0)
    linear = nn.Linear(128, 96, bias=False)
    w = linear.weight.detach().clone()
    Int4WeightOnlyQuantizer(groupsize=32).quantize(linear)
    groups = w.view(96, 4, 32)
    step = ((groups.amax(-1) - groups.amin(-1)) / 15).repeat_interleave(32, dim=1)  # 16 levels per group
    err = (_effective_weight(linear) - w).abs()
    assert (err <= step / 2 + 1e-6).all()
    assert err.max() > step.min() / 10


@pytest.mark.parametrize(
    "quantizer, rtol",
    [(Int8WeightOnlyQuantizer(), INT8_LOGITS_RTOL), (Int4WeightOnlyQuantizer(groupsize=32), INT4_LOGITS_RTOL),
     (Int8DynActInt4WeightQuantizer(groupsize=32), INT4_LOGITS_RTOL)],
    ids=["int8", "int4", "8da4w"],
)
def test_quantized_logits_stay_within_tolerance_of_float_model(float_model, quantizer, rtol):
    tokens = torch.randint(3, 256, (2, 24))
    quantized = quantizer.quantize(copy.deepcopy(float_model))
    assert all(type(m.weight) is not nn.Parameter for m in quantized.modules() if isinstance(m, nn.Linear))
    with torch.no_grad():
        expected, got = float_model(tokens), quantized(tokens)
    assert 1e-4 < _relative_error(got, expected) < rtol


def test_int8_generation_on_cpu_matches_a_float_model_with_the_dequantized_weights(float_model):
    quantized = Int8WeightOnlyQuantizer().quantize(copy.deepcopy(float_model))
    # Independent reference: the float model carrying the weights the int8 layers multiply by.
    reference = copy.deepcopy(float_model)
    for (_, q), (_, r) in zip(quantized.named_modules(), reference.named_modules()):
        if isinstance(q, nn.Linear):
            r.weight.data.copy_(_effective_weight(q))
    prompt = torch.tensor([[0, 0, 5, 17, 33], [9, 12, 40, 41, 42]])
    for model in (quantized, reference):
        model.setup_caches(batch_size=2, dtype=torch.float32, decoder_max_seq_len=32)
    tokens, logits = generate(quantized, prompt, max_generated_tokens=12, temperature=0)
    ref_tokens, ref_logits = generate(reference, prompt, max_generated_tokens=12, temperature=0)
    assert torch.equal(tokens, ref_tokens)
    torch.testing.assert_close(logits, ref_logits, atol=1e-4, rtol=1e-4)
    _, float_logits = generate(float_model, prompt, max_generated_tokens=12, temperature=0)
    assert _relative_error(logits, float_logits) < INT8_LOGITS_RTOL


@pytest.mark.parametrize("quantizer", [Int8WeightOnlyQuantizer(), Int4WeightOnlyQuantizer(groupsize=32)],
                         ids=["int8", "int4"])
def test_quantized_state_dict_reloads_with_weights_only_into_a_quantized_skeleton(float_model, quantizer):
    quantized = quantizer.quantize(copy.deepcopy(float_model))
    buffer = io.BytesIO()
    torch.save(quantized.state_dict(), buffer)
    buffer.seek(0)
    state_dict = torch.load(buffer, weights_only=True)

    torch.manual_seed(1)  # a differently initialised skeleton
    skeleton = quantizer.quantize(llama2(vocab_size=256, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=64,
                                         max_seq_len=128, intermediate_dim=128).eval())
    validate_quantized_state_dict(skeleton, state_dict, source="buffer")
    skeleton.load_state_dict(state_dict)
    tokens = torch.randint(3, 256, (1, 16))
    with torch.no_grad():
        torch.testing.assert_close(skeleton(tokens), quantized(tokens), atol=0, rtol=0)


def test_mismatched_checkpoints_are_named_with_a_fix(float_model):
    int8 = Int8WeightOnlyQuantizer().quantize(copy.deepcopy(float_model))
    int4_32 = Int4WeightOnlyQuantizer(groupsize=32).quantize(copy.deepcopy(float_model))
    int4_64 = Int4WeightOnlyQuantizer(groupsize=64).quantize(copy.deepcopy(float_model))
    with pytest.raises(ValueError, match=r"ckpt\.pt.*not quantized.*tune run quantize"):
        validate_quantized_state_dict(int8, float_model.state_dict(), source="ckpt.pt")
    with pytest.raises(ValueError, match=r"checkpoint is quantized: set `quantizer`"):
        validate_quantized_state_dict(float_model, int8.state_dict())
    with pytest.raises(ValueError, match=r"(?s)different quantizer.*Int4OpaqueTensor\(block_size=\[1, 64\]\)"):
        validate_quantized_state_dict(int4_32, int4_64.state_dict())
    validate_quantized_state_dict(float_model, float_model.state_dict())  # nothing quantized: fine


def test_bad_settings_raise_clear_errors():
    with pytest.raises(ValueError, match="groupsize must be one of"):
        Int4WeightOnlyQuantizer(groupsize=48)
    with pytest.raises(ValueError, match="inner_k_tiles=8 only"):
        Int4WeightOnlyQuantizer(inner_k_tiles=4)
    # torchao would silently leave this layer in float; we refuse.
    with pytest.raises(ValueError, match=r"groupsize=64 must divide.*0 \(in_features=96\)"):
        Int4WeightOnlyQuantizer(groupsize=64).quantize(nn.Sequential(nn.Linear(96, 64)))
    with pytest.raises(ValueError, match="no nn.Linear"):
        Int8WeightOnlyQuantizer().quantize(nn.Sequential(nn.ReLU()))


def test_quantizer_modes_name_checkpoint_files():
    assert get_quantizer_mode(Int8WeightOnlyQuantizer()) == "8w"
    assert get_quantizer_mode(Int4WeightOnlyQuantizer()) == "4w"
    assert get_quantizer_mode(Int8DynActInt4WeightQuantizer()) == "8da4w"
    assert get_quantizer_mode(None) is None


def _fresh_like(float_model):
    # Same architecture, other weights: what a recipe builds before loading.
    model = copy.deepcopy(float_model).train()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    return model


def test_load_quantized_model_quantizes_before_loading_and_checks_types(float_model):
    quantized = Int8WeightOnlyQuantizer().quantize(copy.deepcopy(float_model))
    state_dict = quantized.state_dict()
    tokens = torch.randint(0, float_model.tok_embeddings.num_embeddings, (2, 12))
    # A freshly built model takes the quantized checkpoint once quantized with the same quantizer.
    loaded = load_quantized_model(_fresh_like(float_model), state_dict, Int8WeightOnlyQuantizer(), source="ckpt")
    assert not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens), quantized.eval()(tokens))
    # Without the quantizer, or with a float checkpoint for a quantized model: a clear error.
    with pytest.raises(ValueError, match="the checkpoint is quantized"):
        load_quantized_model(_fresh_like(float_model), state_dict, None, source="ckpt")
    with pytest.raises(ValueError, match="the checkpoint is not quantized"):
        load_quantized_model(_fresh_like(float_model), float_model.state_dict(), Int8WeightOnlyQuantizer())
