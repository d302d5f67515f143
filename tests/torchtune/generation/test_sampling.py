"""`sample`: greedy, temperature, top-k and top-p against directly computed distributions."""

import pytest
import torch

from torchtune.generation import sample

LOGITS = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, 3.0, -2.0, 1.5])
N_DRAWS = 20_000


def _frequencies(tokens, vocab):
    return torch.bincount(tokens.flatten(), minlength=vocab).double() / tokens.numel()


def _draw(n=N_DRAWS, **kwargs):
    rng = torch.Generator().manual_seed(1234)
    logits = LOGITS.expand(n, -1)
    q = torch.empty(n, LOGITS.numel()).exponential_(1, generator=rng)
    tokens = sample(logits, q=q, **kwargs)
    assert tokens.shape == (n, 1) and tokens.dtype == torch.long
    return _frequencies(tokens, LOGITS.numel())


def test_temperature_zero_is_argmax():
    logits = torch.randn(5, 11)
    assert torch.equal(sample(logits, temperature=0.0), logits.argmax(-1, keepdim=True))
    assert torch.equal(sample(logits[0], temperature=0.0), logits[0].argmax(-1, keepdim=True))


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_samples_follow_tempered_softmax(temperature):
    expected = torch.softmax(LOGITS.double() / temperature, dim=-1)
    torch.testing.assert_close(_draw(temperature=temperature), expected, atol=0.012, rtol=0)


def test_top_k_restricts_and_renormalises():
    k = 3
    top = sorted(range(LOGITS.numel()), key=lambda i: -LOGITS[i].item())[:k]
    expected = torch.zeros(LOGITS.numel(), dtype=torch.double)
    z = sum(torch.exp(LOGITS[i].double()) for i in top)
    for i in top:
        expected[i] = torch.exp(LOGITS[i].double()) / z
    torch.testing.assert_close(_draw(top_k=k), expected, atol=0.012, rtol=0)


def test_top_k_one_is_greedy_and_large_top_k_is_no_limit():
    logits = torch.randn(6, 50)
    q = torch.empty(6, 50).exponential_(1)
    assert torch.equal(sample(logits, top_k=1, q=q), logits.argmax(-1, keepdim=True))
    assert torch.equal(sample(logits, top_k=500, q=q), sample(logits, q=q))


def _nucleus_reference(probs, top_p):
    # Walk tokens from most to least likely until the kept mass reaches top_p.
    order = sorted(range(len(probs)), key=lambda i: -probs[i])
    kept, mass = [], 0.0
    for i in order:
        kept.append(i)
        mass += probs[i]
        if mass >= top_p:
            break
    out = torch.zeros(len(probs), dtype=torch.double)
    for i in kept:
        out[i] = probs[i] / mass
    return out


@pytest.mark.parametrize("top_p", [0.5, 0.8, 0.95])
def test_top_p_keeps_smallest_nucleus(top_p):
    probs = torch.softmax(LOGITS.double(), dim=-1).tolist()
    expected = _nucleus_reference(probs, top_p)
    torch.testing.assert_close(_draw(top_p=top_p), expected, atol=0.012, rtol=0)


def test_fixed_noise_is_deterministic_and_bf16_logits_are_accepted():
    logits = torch.randn(4, 64).bfloat16()
    q = torch.empty(4, 64).exponential_(1)
    a = sample(logits, temperature=0.7, top_k=10, top_p=0.9, q=q)
    b = sample(logits, temperature=0.7, top_k=10, top_p=0.9, q=q)
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"temperature": -1.0}, "temperature"), ({"top_k": 0}, "top_k"), ({"top_p": 0.0}, "top_p"),
     ({"top_p": 1.5}, "top_p")],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sample(torch.randn(2, 8), **kwargs)
