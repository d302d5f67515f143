"""`generate` against `transformers` generate, and its cached, uncached and batched paths against each other."""

import contextlib

import pytest
import torch

from tests.test_utils import make_hf_llama
from torchtune.generation import _generation as generation_module
from torchtune.generation import disable_kv_cache, generate, generate_next_token
from torchtune.models.convert_weights import hf_to_tune
from torchtune.models.llama2 import llama2
from torchtune.modules import delete_kv_caches

PAD = 0
PROMPT_LENS = [5, 9, 3]
N_NEW = 16


def _models(num_kv_heads):
    ref, dims = make_hf_llama(num_kv_heads=num_kv_heads)
    ours = llama2(
        vocab_size=dims["vocab_size"], num_layers=dims["num_layers"], num_heads=dims["num_heads"],
        num_kv_heads=num_kv_heads, embed_dim=dims["embed_dim"], max_seq_len=dims["max_seq_len"],
        intermediate_dim=dims["intermediate_dim"], norm_eps=dims["norm_eps"], rope_base=dims["rope_base"],
    ).eval()
    ours.load_state_dict(
        hf_to_tune(ref.state_dict(), num_heads=dims["num_heads"], num_kv_heads=num_kv_heads,
                   dim=dims["embed_dim"])
    )
    return ref, ours


@pytest.fixture(scope="module")
def gqa_models():
    return _models(num_kv_heads=2)


def _prompts(seed=0):
    g = torch.Generator().manual_seed(seed)
    # Ids from 3 up: 0 is padding, 1 and 2 are HF's bos/eos.
    return [torch.randint(3, 256, (n,), generator=g) for n in PROMPT_LENS]


def _left_pad(prompts):
    s = max(len(p) for p in prompts)
    batch = torch.full((len(prompts), s), PAD, dtype=torch.long)
    attention_mask = torch.zeros(len(prompts), s, dtype=torch.long)
    for i, p in enumerate(prompts):
        batch[i, s - len(p):] = p
        attention_mask[i, s - len(p):] = 1
    return batch, attention_mask


def _hf_greedy(ref, batch, attention_mask, n, eos=None):
    out = ref.generate(
        input_ids=batch, attention_mask=attention_mask, do_sample=False, max_new_tokens=n,
        pad_token_id=PAD, eos_token_id=eos, return_dict_in_generate=True, output_logits=True,
    )
    return out.sequences, torch.stack(out.logits, dim=1)


def _with_cache(model, batch_size=4, length=64):
    # Fresh caches every time: the module-scoped model is shared between tests.
    if model.caches_are_setup():
        delete_kv_caches(model)
    model.setup_caches(batch_size=batch_size, dtype=torch.float32, decoder_max_seq_len=length)
    return model


@pytest.mark.parametrize("num_kv_heads", [4, 2])
def test_greedy_with_and_without_cache_matches_transformers(num_kv_heads):
    ref, ours = _models(num_kv_heads)
    batch, attention_mask = _left_pad(_prompts())
    expected_tokens, expected_logits = _hf_greedy(ref, batch, attention_mask, N_NEW)

    uncached_tokens, uncached_logits = generate(ours, batch, max_generated_tokens=N_NEW, temperature=0)
    _with_cache(ours)
    tokens, logits = generate(ours, batch, max_generated_tokens=N_NEW, temperature=0)

    assert tokens.shape == (3, batch.shape[1] + N_NEW) and logits.shape == (3, N_NEW, 256)
    assert torch.equal(tokens, expected_tokens)
    assert torch.equal(uncached_tokens, expected_tokens)
    torch.testing.assert_close(logits, expected_logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(uncached_logits, expected_logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "no_cache"])
def test_batch_of_different_lengths_equals_each_prompt_alone(gqa_models, use_cache):
    _, ours = gqa_models
    prompts = _prompts(seed=1)
    batch, _ = _left_pad(prompts)
    if use_cache:
        _with_cache(ours)
        run = lambda x: generate(ours, x, max_generated_tokens=N_NEW, temperature=0)  # noqa: E731
        tokens, logits = run(batch)
        alone = [run(p) for p in prompts]
    else:
        _with_cache(ours)
        with disable_kv_cache(ours):
            tokens, logits = generate(ours, batch, max_generated_tokens=N_NEW, temperature=0)
            alone = [generate(ours, p, max_generated_tokens=N_NEW, temperature=0) for p in prompts]
    s = batch.shape[1]
    for i, (p, (t1, l1)) in enumerate(zip(prompts, alone)):
        assert torch.equal(t1[0], torch.cat([p, tokens[i, s:]]))
        torch.testing.assert_close(l1[0], logits[i], atol=1e-5, rtol=1e-5)


def test_sampling_is_reproducible_and_same_with_or_without_cache(gqa_models):
    _, ours = gqa_models
    batch, _ = _left_pad(_prompts())
    kwargs = dict(max_generated_tokens=N_NEW, temperature=0.9, top_k=50, top_p=0.95)
    _with_cache(ours)
    a, _ = generate(ours, batch, rng=torch.Generator().manual_seed(7), **kwargs)
    b, _ = generate(ours, batch, rng=torch.Generator().manual_seed(7), **kwargs)
    c, _ = generate(ours, batch, rng=torch.Generator().manual_seed(8), **kwargs)
    with disable_kv_cache(ours):
        d, _ = generate(ours, batch, rng=torch.Generator().manual_seed(7), **kwargs)
    assert torch.equal(a, b)
    assert torch.equal(a, d)
    assert not torch.equal(a, c)
    # Sampled continuations differ from greedy ones (temperature actually does something).
    greedy, _ = generate(ours, batch, max_generated_tokens=N_NEW, temperature=0)
    assert not torch.equal(a, greedy)


def test_top_k_one_equals_greedy(gqa_models):
    _, ours = gqa_models
    batch, _ = _left_pad(_prompts())
    _with_cache(ours)
    greedy, greedy_logits = generate(ours, batch, max_generated_tokens=N_NEW, temperature=0)
    top1, top1_logits = generate(ours, batch, max_generated_tokens=N_NEW, temperature=1.5, top_k=1,
                                 rng=torch.Generator().manual_seed(3))
    assert torch.equal(top1, greedy)
    torch.testing.assert_close(top1_logits, greedy_logits)


@pytest.mark.parametrize("check_every", [1, 5], ids=["check_each_step", "check_every_5"])
@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "no_cache"])
def test_stop_tokens_pad_finished_rows_and_stop_early_like_transformers(
    gqa_models, use_cache, check_every, monkeypatch
):
    ref, ours = gqa_models
    # Accelerators check for "all stopped" only every few steps; emulate that on CPU. The
    # output must not depend on it.
    monkeypatch.setattr(generation_module, "_stop_check_interval", lambda device: check_every)
    batch, attention_mask = _left_pad(_prompts())
    s = batch.shape[1]
    free, _ = _hf_greedy(ref, batch, attention_mask, N_NEW)
    # Stop ids taken from the unconstrained continuations, so that every row stops early,
    # at a different step.
    stop_tokens = sorted({int(free[0, s + 2]), int(free[1, s + 5]), int(free[2, s + 7])})
    expected, _ = _hf_greedy(ref, batch, attention_mask, N_NEW, eos=stop_tokens)
    assert expected.shape[1] < s + N_NEW  # the reference stopped early too

    _with_cache(ours)
    if use_cache:
        tokens, logits = generate(ours, batch, max_generated_tokens=N_NEW, temperature=0,
                                  stop_tokens=stop_tokens)
    else:
        with disable_kv_cache(ours):
            tokens, logits = generate(ours, batch, max_generated_tokens=N_NEW, temperature=0,
                                      stop_tokens=stop_tokens)
    assert torch.equal(tokens, expected)
    assert logits.shape[1] == tokens.shape[1] - s


def test_pad_id_inside_a_prompt_is_content(gqa_models):
    ref, ours = gqa_models
    prompt = torch.tensor([PAD, PAD, 17, 33, PAD, 90, PAD, 41])
    # HF reference: the two leading pads are padding, the inner ones are tokens.
    attention_mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1]])
    expected, _ = _hf_greedy(ref, prompt[None], attention_mask, 8)
    _with_cache(ours)
    tokens, _ = generate(ours, prompt, max_generated_tokens=8, temperature=0, pad_id=PAD)
    assert torch.equal(tokens, expected)


@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "no_cache"])
def test_negative_pad_id_is_never_fed_to_the_embedding(gqa_models, use_cache, monkeypatch):
    # Llama2's tokenizer has pad_id -1: padding and finished rows must not index the embedding.
    _, ours = gqa_models
    monkeypatch.setattr(generation_module, "_stop_check_interval", lambda device: 4)  # run past the stops
    batch, _ = _left_pad(_prompts())
    _with_cache(ours)
    free, _ = generate(ours, batch, max_generated_tokens=N_NEW, temperature=0)
    s = batch.shape[1]
    stop_tokens = sorted({int(free[0, s + 2]), int(free[1, s + 5]), int(free[2, s + 7])})
    with contextlib.ExitStack() as stack:
        if not use_cache:
            stack.enter_context(disable_kv_cache(ours))
        expected, _ = generate(ours, batch, max_generated_tokens=N_NEW, temperature=0, stop_tokens=stop_tokens)
        tokens, _ = generate(ours, batch.masked_fill(batch == PAD, -1), max_generated_tokens=N_NEW, temperature=0,
                             pad_id=-1, stop_tokens=stop_tokens)
    assert (tokens == -1).any()
    assert torch.equal(tokens.masked_fill(tokens == -1, PAD), expected)


def test_custom_next_token_function_runs_every_decode_step(gqa_models):
    _, ours = gqa_models
    calls = []

    def counting_next_token(*args, **kwargs):
        calls.append(kwargs["mask"].shape)
        return generate_next_token(*args, **kwargs)

    batch, _ = _left_pad(_prompts())
    _with_cache(ours, length=48)
    expected, _ = generate(ours, batch, max_generated_tokens=N_NEW, temperature=0)
    tokens, _ = generate(ours, batch, max_generated_tokens=N_NEW, temperature=0,
                         custom_generate_next_token=counting_next_token)
    assert torch.equal(tokens, expected)
    # The prefill runs the model directly; every later step goes through the custom function
    # with a one-row mask over the whole cache.
    assert calls == [torch.Size([3, 1, 48])] * (N_NEW - 1)


def test_bad_inputs_raise_clear_errors(gqa_models):
    _, ours = gqa_models
    _with_cache(ours, length=16)
    with pytest.raises(ValueError, match="pad_id"):
        generate(ours, torch.tensor([[PAD, PAD], [5, 6]]), max_generated_tokens=2)
    with pytest.raises(ValueError, match="KV cache length"):
        generate(ours, torch.tensor([5, 6, 7]), max_generated_tokens=15)
    with pytest.raises(ValueError, match="max_generated_tokens"):
        generate(ours, torch.tensor([5, 6, 7]), max_generated_tokens=0)
    with pytest.raises(ValueError, match="temperature"):
        generate(ours, torch.tensor([5, 6, 7]), max_generated_tokens=2, temperature=-0.5)
    with disable_kv_cache(ours), pytest.raises(ValueError, match="max_seq_len"):
        generate(ours, torch.tensor([5, 6, 7]), max_generated_tokens=500)
    # A cache longer than max_seq_len (128) does not lift the RoPE limit.
    _with_cache(ours, length=256)
    with pytest.raises(ValueError, match=r"= 202 exceeds the model's max_seq_len \(128\)"):
        generate(ours, torch.tensor([5, 6, 7]), max_generated_tokens=200)


def test_chunked_output_is_rejected(gqa_models):
    _, ours = gqa_models
    ours.set_num_output_chunks(2)
    try:
        with disable_kv_cache(ours), pytest.raises(TypeError, match="set_num_output_chunks"):
            generate(ours, torch.tensor([5, 6, 7]), max_generated_tokens=2)
    finally:
        ours.set_num_output_chunks(0)
