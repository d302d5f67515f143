import pytest
import torch

from torchtune.models.llama2 import llama2

TINY = dict(vocab_size=96, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=32, max_seq_len=32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_output_equals_full_logits(dtype):
    torch.manual_seed(0)
    model = llama2(**TINY).to(dtype)
    tokens = torch.randint(0, 96, (3, 11))
    full = model(tokens)
    model.set_num_output_chunks(4)
    chunks = model(tokens)
    assert [c.shape[1] for c in chunks] == [3, 3, 3, 2]
    assert all(c.is_contiguous() for c in chunks)
    torch.testing.assert_close(torch.cat(chunks, dim=1), full)  # same maths, other GEMM blocking


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_output_projects_without_copying_the_weight(dtype):
    model = llama2(**TINY).to(dtype)
    model.output.weight.requires_grad_(False)  # frozen, as in LoRA
    model.set_num_output_chunks(2)
    with torch.profiler.profile(record_shapes=True) as prof:
        model(torch.randint(0, 96, (3, 10)))
    # A sequence slice of [b, s, d] fed as is to a projection with a frozen weight runs as a batched
    # matmul against the [vocab, d] weight expanded (copied) to [b, d, vocab].
    vocab_matmuls = [
        e.name for e in prof.events()
        if e.name in ("aten::mm", "aten::bmm") and any(TINY["vocab_size"] in shape for shape in e.input_shapes)
    ]
    assert vocab_matmuls == ["aten::mm", "aten::mm"]


def test_unembed_and_chunked_output_split_the_forward():
    torch.manual_seed(0)
    model = llama2(**TINY)
    tokens = torch.randint(0, 96, (2, 9))
    full = model(tokens)
    h = model.tok_embeddings(tokens)
    for layer in model.layers:
        h = layer(h)
    torch.testing.assert_close(model.unembed(h), full)
    model.set_num_output_chunks(3)
    chunks = model.chunked_output(model.norm(h))
    assert len(chunks) == 3
    torch.testing.assert_close(torch.cat(chunks, dim=1), full)
    torch.testing.assert_close(torch.cat(model.unembed(h), dim=1), full)


def test_encoder_inputs_reach_the_layers_only_when_given():
    model = llama2(**TINY)
    seen = []
    for layer in model.layers:
        layer.register_forward_pre_hook(lambda m, args, kwargs: seen.append(sorted(kwargs)), with_kwargs=True)
    tokens = torch.randint(0, 96, (1, 5))
    plain = model(tokens)
    assert seen == [["input_pos", "mask"]] * 2
    seen.clear()
    encoder_input, encoder_mask = torch.randn(1, 3, 32), torch.ones(1, 5, 3, dtype=torch.bool)
    # Self-attention layers ignore the encoder: same logits.
    torch.testing.assert_close(model(tokens, encoder_input=encoder_input, encoder_mask=encoder_mask), plain)
    assert seen == [["encoder_input", "encoder_mask", "input_pos", "mask"]] * 2
    with pytest.raises(TypeError):
        model(tokens, labels=tokens)  # no catch-all keyword arguments
