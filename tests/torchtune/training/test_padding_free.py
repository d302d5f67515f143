"""Padding-free micro-batches give the padded batch's loss and gradients, for every attention variant."""

import pytest
import torch

from torchtune import training
from torchtune.models import decoder
from torchtune.models.llama2 import lora_llama2
from torchtune.modules import build_decoder
from torchtune.modules.attention_utils import block_causal_mask, DocumentMask
from torchtune.modules.loss import CEWithChunkedOutputLoss, LinearCrossEntropyLoss

IGNORE = -100
VOCAB = 64


def _padded_batch(lengths=(11, 4, 16, 7), prompt=(3, 0, 5, 2), seed=0):
    """Right-padded tokens and labels: row i has lengths[i] real tokens, the first prompt[i] untrained."""
    g = torch.Generator().manual_seed(seed)
    s = max(lengths)
    tokens = torch.zeros(len(lengths), s, dtype=torch.long)
    labels = torch.full((len(lengths), s), IGNORE)
    for i, (n, p) in enumerate(zip(lengths, prompt)):
        tokens[i, :n] = torch.randint(1, VOCAB, (n,), generator=g)
        labels[i, p:n] = tokens[i, p:n]
    return tokens, labels


def _loss_and_grads(model, loss_fn, tokens, labels, padding_free):
    model.zero_grad(set_to_none=True)
    batch = {"tokens": tokens.clone(), "labels": labels.clone()}
    loss, n = training.sft_loss_step(model, loss_fn, batch, torch.enable_grad(), padding_free=padding_free)
    loss.backward()
    return loss.detach(), n, {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def _assert_same_step(model, loss_fn):
    assert training.supports_padding_free(model)
    tokens, labels = _padded_batch()
    loss_a, n_a, grads_a = _loss_and_grads(model, loss_fn, tokens, labels, padding_free=False)
    loss_b, n_b, grads_b = _loss_and_grads(model, loss_fn, tokens, labels, padding_free=True)
    assert n_a == n_b
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-6, atol=1e-5)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-4, atol=1e-6, msg=name)


def _dims(**extra):
    return {**dict(vocab_size=VOCAB, num_layers=2, num_heads=4, embed_dim=32, intermediate_dim=64, max_seq_len=32), **extra}


def _all_trainable(model):
    for p in model.parameters():
        p.requires_grad_(True)
    return model


VARIANTS = {
    # LoRA adapters only, GQA, as in the shipped LoRA configs.
    "lora_gqa": lambda: lora_llama2(lora_attn_modules=["q_proj", "v_proj", "output_proj"], apply_lora_to_mlp=True,
                                    lora_rank=4, lora_alpha=8, num_kv_heads=2, **_dims()),
    # Mistral / Qwen 2 / Gemma 2 / Gemma 3 quirks: windows shorter than a row, biases, soft-caps, QK-norm.
    "window_bias": lambda: _all_trainable(build_decoder(num_kv_heads=1, sliding_window=[3, None], qkv_bias=True, **_dims())),
    "gemma2_like": lambda: _all_trainable(build_decoder(num_kv_heads=2, sliding_window=5, post_norms=True,
                                                        attn_softcapping=50.0, output_softcapping=30.0, attn_scale=0.3,
                                                        embed_scale=32**0.5, tie_word_embeddings=True, **_dims())),
    "qk_norm": lambda: _all_trainable(build_decoder(num_kv_heads=4, qk_norm=True, **_dims())),
    # The block library: positions from ALiBi and T5 biases, absolute embeddings, post-norm.
    "alibi_postnorm": lambda: _all_trainable(decoder(positional="alibi", attn_norm_placement="post", ffn="geglu", **_dims())),
    "parallel_residual": lambda: _all_trainable(decoder(parallel_residual=True, num_kv_heads=2, **_dims())),
    "t5_bias": lambda: _all_trainable(decoder(positional="t5", **_dims())),
    "learned_absolute": lambda: _all_trainable(decoder(positional="learned", **_dims())),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("loss", ["linear_ce", "chunked_ce"])
def test_padding_free_step_equals_the_padded_step(variant, loss):
    torch.manual_seed(0)
    model = VARIANTS[variant]()
    loss_fn = LinearCrossEntropyLoss(chunk_size=8) if loss == "linear_ce" else CEWithChunkedOutputLoss(num_output_chunks=3)
    _assert_same_step(model, training.prepare_loss(loss_fn, model))


def test_remove_padding_keeps_each_row_up_to_its_last_trained_position():
    tokens = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 0, 0, 0], [1, 2, 3, 4, 5]])
    shifted = torch.tensor([[6, 7, IGNORE, IGNORE, IGNORE],  # last input predicts nothing: cut
                            [IGNORE, IGNORE, IGNORE, IGNORE, IGNORE],  # nothing trained: row left out
                            [IGNORE, 3, IGNORE, 5, IGNORE]])
    out = training.remove_padding(tokens, shifted, IGNORE)
    assert out["tokens"].tolist() == [[5, 6, 1, 2, 3, 4]]
    assert out["labels"].tolist() == [[6, 7, IGNORE, 3, IGNORE, 5]]
    assert out["input_pos"].tolist() == [[0, 1, 0, 1, 2, 3]]
    assert out["mask"].seq_lens == (2, 4)
    assert training.remove_padding(tokens[1:2], shifted[1:2], IGNORE) is None
    with pytest.raises(ValueError, match="must both be"):
        training.remove_padding(tokens, shifted[:, :3], IGNORE)


def test_document_mask_dense_form_is_block_causal():
    mask = DocumentMask([2, 3])
    ids = torch.tensor([[0, 0, 1, 1, 1]])
    assert torch.equal(mask.dense(), block_causal_mask(ids))
    assert mask.total_len == 5 and mask.max_len == 3 and mask.to("cpu") is mask
    with pytest.raises(ValueError, match="positive lengths"):
        DocumentMask([3, 0])


def test_layers_without_document_attention_get_the_dense_mask():
    """A decoder whose layers cannot attend per document gets the dense block-causal mask: same logits
    as running each sequence alone."""
    torch.manual_seed(0)
    model = build_decoder(num_kv_heads=4, **_dims(max_seq_len=64)).eval()
    model._layers_take_document_masks = lambda: False  # as for layers of another kind
    tokens, labels = _padded_batch()
    unpadded = training.remove_padding(tokens, training.shift_labels(labels, IGNORE), IGNORE)
    logits = model(unpadded["tokens"], mask=unpadded["mask"], input_pos=unpadded["input_pos"])  # [1, T, v]
    for (start, end), row in zip(unpadded["mask"].spans, range(tokens.shape[0])):
        alone = model(tokens[row : row + 1, : end - start])
        torch.testing.assert_close(logits[:, start:end], alone, rtol=1e-5, atol=1e-5)
    assert not training.supports_padding_free(decoder(attention="linear", positional="none", **_dims()))


def test_models_that_need_the_padded_batch_are_recognised():
    torch.manual_seed(0)
    assert not training.supports_padding_free(decoder(num_memory_tokens=2, **_dims()))
    cached = build_decoder(num_kv_heads=4, **_dims())
    cached.setup_caches(batch_size=1, dtype=torch.float32)
    assert not training.supports_padding_free(cached)


def test_a_padding_free_batch_cannot_be_decoded_with_a_cache():
    torch.manual_seed(0)
    model = build_decoder(num_kv_heads=4, **_dims()).eval()
    model.setup_caches(batch_size=1, dtype=torch.float32)
    mask = DocumentMask([3, 2])
    with pytest.raises(ValueError, match="KV cache"):
        model.layers[0].attn(torch.randn(1, 5, 32), mask=mask, input_pos=mask.input_pos())


def test_chunked_output_loss_runs_fused_with_the_same_value():
    torch.manual_seed(0)
    model_a, model_b = build_decoder(num_kv_heads=2, **_dims()), build_decoder(num_kv_heads=2, **_dims())
    model_b.load_state_dict(model_a.state_dict())
    chunked = training.prepare_loss(CEWithChunkedOutputLoss(ignore_index=-1), model_a)
    fused = training.prepare_loss(CEWithChunkedOutputLoss(ignore_index=-1), model_b, fuse_output=True)
    assert type(chunked) is CEWithChunkedOutputLoss and isinstance(fused, LinearCrossEntropyLoss)
    assert fused.ignore_index == -1 and model_b.skip_output_layer
    tokens, labels = _padded_batch()
    labels[labels == IGNORE] = -1
    a, _ = training.sft_loss_step(model_a, chunked, {"tokens": tokens, "labels": labels.clone()}, torch.no_grad())
    b, _ = training.sft_loss_step(model_b, fused, {"tokens": tokens, "labels": labels.clone()}, torch.no_grad())
    torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-5)


def test_compiled_layers_take_padding_free_batches_without_recompiling_per_batch():
    """The per-document attention stays out of the compiled graphs: batches of new document lengths
    reuse them (after the one dynamic-shape recompile), and the losses equal the eager padded ones."""
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    compiled, eager = build_decoder(num_kv_heads=2, **_dims(max_seq_len=64)), build_decoder(num_kv_heads=2, **_dims(max_seq_len=64))
    eager.load_state_dict(compiled.state_dict())
    training.compile_model(compiled, verbose=False)
    assert training.supports_padding_free(compiled)
    loss_c = training.prepare_loss(LinearCrossEntropyLoss(chunk_size=16), compiled)
    loss_e = training.prepare_loss(LinearCrossEntropyLoss(chunk_size=16), eager)
    counters.clear()
    graphs = []
    for seed, lengths in enumerate([(25, 19, 29, 23), (8, 28, 8, 26), (12, 13, 18, 18), (20, 11, 29, 6)]):
        tokens, labels = _padded_batch(lengths, prompt=(0, 0, 0, 0), seed=seed)
        a, _ = training.sft_loss_step(compiled, loss_c, {"tokens": tokens, "labels": labels}, torch.no_grad(),
                                      padding_free=True)
        b, _ = training.sft_loss_step(eager, loss_e, {"tokens": tokens, "labels": labels}, torch.no_grad())
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[-1] == graphs[1] > 0  # nothing compiled after the second batch
