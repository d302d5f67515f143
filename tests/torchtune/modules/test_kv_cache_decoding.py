import pytest
import torch

from tests.test_utils import TINY_LLAMA
from torchtune.models.llama2 import llama2
from torchtune.modules import KVCache


@pytest.mark.parametrize("num_kv_heads", [4, 2])
def test_cached_decoding_equals_full_forward(num_kv_heads):
    model = llama2(**dict(TINY_LLAMA, num_kv_heads=num_kv_heads)).eval()
    tokens = torch.randint(0, TINY_LLAMA["vocab_size"], (2, 24))
    with torch.no_grad():
        full = model(tokens)
        model.setup_caches(batch_size=2, dtype=torch.float32, decoder_max_seq_len=32)
        assert model.caches_are_setup() and model.caches_are_enabled()
        # Prefill 8 tokens, then decode the remaining 16 one by one.
        steps = [model(tokens[:, :8])]
        for i in range(8, 24):
            steps.append(model(tokens[:, i : i + 1], input_pos=torch.tensor([[i], [i]])))
        torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)

        # After reset, decoding from scratch (implicit positions) gives the same logits again.
        model.reset_caches()
        again = [model(tokens[:, i : i + 1]) for i in range(24)]
        torch.testing.assert_close(torch.cat(again, dim=1), full, atol=1e-5, rtol=1e-5)


def test_cache_rejects_larger_batch():
    model = llama2(**TINY_LLAMA).eval()
    model.setup_caches(batch_size=1, dtype=torch.float32, decoder_max_seq_len=16)
    with pytest.raises(ValueError, match="batch_size=1"):
        model(torch.zeros(2, 4, dtype=torch.long))


def test_cache_overflow_and_reset():
    cache = KVCache(batch_size=1, max_seq_len=4, num_kv_heads=2, head_dim=8, dtype=torch.float32)
    k = torch.randn(1, 2, 3, 8)
    k_out, v_out = cache.update(k, k)
    assert cache.size == 3
    torch.testing.assert_close(k_out[:, :, :3], k)
    with pytest.raises(ValueError, match="overflow"):
        cache.update(k, k)
    cache.reset()
    assert cache.size == 0 and cache.k_cache.abs().sum() == 0


def test_reset_without_setup_raises():
    model = llama2(**TINY_LLAMA)
    with pytest.raises(RuntimeError, match="setup_caches"):
        model.reset_caches()
