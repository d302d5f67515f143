import shutil

import pytest

from tests.test_utils import save_hf_llama


@pytest.fixture(scope="session")
def _hf_llama_master(tmp_path_factory):
    """A sharded random-init HF Llama (GQA, 4 shards), saved once for the whole directory."""
    path = tmp_path_factory.mktemp("hf_llama_master")
    model, dims = save_hf_llama(path, num_kv_heads=2, max_shard_size="150KB")
    (path / "tokenizer_config.json").write_text('{"model_max_length": 128}\n')
    return path, model, dims


@pytest.fixture
def hf_llama(tmp_path, _hf_llama_master):
    """A private copy of the sharded HF checkpoint: (checkpoint_dir, hf_model, dims)."""
    src, model, dims = _hf_llama_master
    dst = tmp_path / "hf_in"
    shutil.copytree(src, dst)
    return dst, model, dims
