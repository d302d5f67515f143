"""KV-cache context managers: disable_kv_cache, local_kv_cache, delete_kv_caches."""

import pytest
import torch

from tests.test_utils import TINY_LLAMA
from torchtune.models.llama2 import llama2
from torchtune.modules import delete_kv_caches, disable_kv_cache, local_kv_cache


def _model():
    return llama2(**dict(TINY_LLAMA, num_layers=2)).eval()


def test_disable_kv_cache_runs_full_forward_and_restores():
    model = _model()
    tokens = torch.randint(0, TINY_LLAMA["vocab_size"], (2, 10))
    with torch.no_grad():
        full = model(tokens)
        model.setup_caches(batch_size=2, dtype=torch.float32, decoder_max_seq_len=16)
        with disable_kv_cache(model):
            assert not model.caches_are_enabled()
            # Without the cache the same call can be repeated: nothing is written to it.
            torch.testing.assert_close(model(tokens), full)
            torch.testing.assert_close(model(tokens), full)
        assert model.caches_are_enabled()
        assert model.layers[0].attn.kv_cache.size == 0


def test_disable_kv_cache_restores_after_an_exception():
    model = _model()
    model.setup_caches(batch_size=1, dtype=torch.float32, decoder_max_seq_len=8)
    with pytest.raises(RuntimeError, match="boom"), disable_kv_cache(model):
        raise RuntimeError("boom")
    assert model.caches_are_enabled()


def test_local_kv_cache_sets_up_then_deletes():
    model = _model()
    with local_kv_cache(model, batch_size=3, device=torch.device("cpu"), dtype=torch.bfloat16,
                        decoder_max_seq_len=12):
        cache = model.layers[1].attn.kv_cache
        assert model.caches_are_enabled() and model.decoder_max_cache_seq_len == 12
        assert cache.k_cache.shape == (3, TINY_LLAMA["num_kv_heads"], 12, 16)
        assert cache.k_cache.dtype == torch.bfloat16
    assert not model.caches_are_setup()
    assert all(layer.attn.kv_cache is None for layer in model.layers)
    assert "causal_mask" not in dict(model.named_buffers())
    # A model without caches runs a plain full forward again.
    model(torch.zeros(1, 4, dtype=torch.long))


def test_errors_name_the_missing_or_existing_caches():
    model = _model()
    with pytest.raises(ValueError, match="setup_caches"), disable_kv_cache(model):
        pass
    with pytest.raises(ValueError, match="setup_caches"):
        delete_kv_caches(model)
    model.setup_caches(batch_size=1, dtype=torch.float32, decoder_max_seq_len=8)
    with pytest.raises(ValueError, match="delete_kv_caches"), local_kv_cache(
        model, batch_size=1, device="cpu", dtype=torch.float32
    ):
        pass
