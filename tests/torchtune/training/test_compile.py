import pytest
import torch

from tests.test_utils import TINY_LLAMA
from torchtune.models.llama2 import llama2
from torchtune.modules.loss import CEWithChunkedOutputLoss
from torchtune.training import compile_loss, compile_model, set_activation_checkpointing
from torchtune.modules import TransformerSelfAttentionLayer


@pytest.fixture(autouse=True)
def _eager_backend(monkeypatch):
    # Dynamo still traces every layer; the eager backend skips the C++ codegen that is slow on CPU.
    monkeypatch.setenv("TORCH_COMPILE_BACKEND", "eager")
    yield
    torch._dynamo.reset()


def test_compile_model_compiles_each_layer_and_keeps_outputs():
    model = llama2(**TINY_LLAMA)
    set_activation_checkpointing(model, {TransformerSelfAttentionLayer})
    tokens = torch.randint(0, TINY_LLAMA["vocab_size"], (1, 8))
    expected = model(tokens)
    compile_model(model, verbose=True)
    layers = [m for m in model.modules() if isinstance(m, TransformerSelfAttentionLayer)]
    assert len(layers) == TINY_LLAMA["num_layers"]
    assert all(layer._compiled_call_impl is not None for layer in layers)
    torch.testing.assert_close(model(tokens), expected)
    with pytest.raises(ValueError, match="no TransformerSelfAttentionLayer"):
        compile_model(torch.nn.Linear(2, 2))


def test_compile_loss_keeps_the_object_and_its_attributes():
    loss_fn = CEWithChunkedOutputLoss(num_output_chunks=2)
    compiled = compile_loss(loss_fn)
    assert compiled is loss_fn and compiled.num_output_chunks == 2 and compiled.ignore_index == -100
    logits, labels = torch.randn(2, 6, 11), torch.randint(0, 11, (2, 6))
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 11), labels.reshape(-1))
    torch.testing.assert_close(compiled(logits, labels), expected)
    plain = compile_loss(torch.nn.MSELoss())
    assert plain._compiled_call_impl is not None


def test_compile_is_skipped_on_cpu_unless_forced(monkeypatch):
    from torchtune.training import compile_enabled
    from torchtune.training._compile import COMPILE_ON_CPU_ENV

    monkeypatch.delenv(COMPILE_ON_CPU_ENV, raising=False)
    assert not compile_enabled(True, torch.device("cpu"))
    assert not compile_enabled(False, torch.device("cuda"))
    assert compile_enabled(True, torch.device("cuda"))
    monkeypatch.setenv(COMPILE_ON_CPU_ENV, "1")
    assert compile_enabled(True, torch.device("cpu"))
