import contextlib

import pytest
import torch
import torch.nn.functional as F
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper

from tests.test_utils import TINY_LLAMA
from torchtune.models.llama2 import llama2
from torchtune.modules import TransformerSelfAttentionLayer
from torchtune.training import (
    apply_selective_activation_checkpointing,
    get_act_offloading_ctx_manager,
    OffloadActivations,
    set_activation_checkpointing,
)

V = TINY_LLAMA["vocab_size"]


def _loss_and_grads(model, tokens, ctx=None):
    with ctx or contextlib.nullcontext():
        logits = model(tokens)
    loss = F.cross_entropy(logits.reshape(-1, V), tokens.roll(-1, dims=1).reshape(-1))
    loss.backward()
    # Checkpoint wrappers add a prefix to parameter names (not to state-dict keys).
    grads = {n.replace("_checkpoint_wrapped_module.", ""): p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    return loss.detach(), grads


def _assert_same(a, b):
    torch.testing.assert_close(a[0], b[0])
    assert a[1].keys() == b[1].keys()
    for name in a[1]:
        torch.testing.assert_close(a[1][name], b[1][name], msg=name)


def test_checkpointing_keeps_grads_and_state_dict_keys():
    model = llama2(**TINY_LLAMA)
    tokens = torch.randint(0, V, (2, 12))
    expected = _loss_and_grads(model, tokens)
    keys = list(model.state_dict())
    set_activation_checkpointing(model, auto_wrap_policy={TransformerSelfAttentionLayer})
    assert all(isinstance(layer, CheckpointWrapper) for layer in model.layers)
    assert list(model.state_dict()) == keys
    _assert_same(_loss_and_grads(model, tokens), expected)


def test_checkpointing_policy_matching_nothing_is_an_error():
    with pytest.raises(ValueError, match="matches no module"):
        set_activation_checkpointing(torch.nn.Sequential(torch.nn.Linear(2, 2)), {TransformerSelfAttentionLayer})


def test_selective_checkpointing_wraps_every_nth_layer():
    model = llama2(**dict(TINY_LLAMA, num_layers=4))
    tokens = torch.randint(0, V, (2, 12))
    expected = _loss_and_grads(model, tokens)
    apply_selective_activation_checkpointing(model, "selective", 2)
    assert [isinstance(layer, CheckpointWrapper) for layer in model.layers] == [False, True, False, True]
    _assert_same(_loss_and_grads(model, tokens), expected)
    with pytest.raises(ValueError, match="'full' or 'selective'"):
        apply_selective_activation_checkpointing(model, "some")
    with pytest.raises(ValueError, match="not supported"):
        apply_selective_activation_checkpointing(model, "selective", "op")


def test_offloading_is_a_no_op_on_cpu():
    model = llama2(**TINY_LLAMA)
    assert isinstance(get_act_offloading_ctx_manager(model, False), contextlib.nullcontext)
    ctx = get_act_offloading_ctx_manager(model, True)
    assert isinstance(ctx, contextlib.nullcontext)


class _OffloadCpuTensors(OffloadActivations):
    """Treats CPU activations as offloadable, to exercise the bookkeeping without a GPU."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.packed, self.copies = 0, set()

    def _should_offload(self, tensor):
        return self._worth_offloading(tensor)

    def _pack(self, tensor):
        packed = super()._pack(tensor)
        if packed is not tensor:
            self.packed += 1
            self.copies.add(id(packed))
        return packed


def test_offloading_bookkeeping_gives_identical_gradients():
    model = llama2(**TINY_LLAMA)
    tokens = torch.randint(0, V, (2, 12))
    expected = _loss_and_grads(model, tokens)
    ctx = _OffloadCpuTensors(use_pin_memory=False, use_streams=False, keep_on_device=model.parameters())
    for _ in range(2):  # the context is reused step after step
        ctx.packed, ctx.copies = 0, set()
        _assert_same(_loss_and_grads(model, tokens, ctx), expected)
        # x is saved by each of q, k and v (and the like) but copied once.
        assert 0 < len(ctx.copies) < ctx.packed


@pytest.mark.gpu
@pytest.mark.parametrize("use_streams", [True, False])
def test_offloading_on_cuda_matches(use_streams):
    model = llama2(**TINY_LLAMA).cuda()
    tokens = torch.randint(0, V, (2, 64), device="cuda")
    expected = _loss_and_grads(model, tokens)
    ctx = get_act_offloading_ctx_manager(model, True)
    assert isinstance(ctx, OffloadActivations)
    ctx.use_streams = use_streams
    _assert_same(_loss_and_grads(model, tokens, ctx), expected)


def test_offloading_rejects_an_empty_forward_stash():
    with pytest.raises(ValueError, match="max_fwd_stash_size"):
        OffloadActivations(max_fwd_stash_size=0)
    # Upstream's positional order: use_pin_memory, use_streams, max_fwd_stash_size, min_offload_size.
    ctx = OffloadActivations(False, False, 3, 64)
    assert (ctx.max_fwd_stash_size, ctx.min_offload_size) == (3, 64)


@pytest.mark.gpu
@pytest.mark.parametrize("max_fwd_stash_size", [1, 5])
def test_offloading_forward_stash_is_bounded_and_drained(max_fwd_stash_size):
    model = llama2(**TINY_LLAMA).cuda()
    tokens = torch.randint(0, V, (2, 64), device="cuda")
    expected = _loss_and_grads(model, tokens)
    ctx = OffloadActivations(
        max_fwd_stash_size=max_fwd_stash_size, keep_on_device=[*model.parameters(), *model.buffers()]
    )
    sizes = []
    pack = ctx._pack

    def _recording_pack(tensor):
        packed = pack(tensor)
        sizes.append(len(ctx._fwd_stash))
        return packed

    ctx.pack_hook = _recording_pack
    _assert_same(_loss_and_grads(model, tokens, ctx), expected)
    assert 0 < max(sizes) <= max_fwd_stash_size
    assert len(ctx._fwd_stash) == 0  # released when the forward's context exits


def test_parameters_buffers_and_small_tensors_are_never_offloaded():
    linear = torch.nn.Linear(64, 64)
    buffer = torch.randn(64, 64)
    ctx = OffloadActivations(min_offload_size=1024, keep_on_device=[buffer])
    assert ctx._worth_offloading(torch.randn(64, 64))
    assert not ctx._worth_offloading(linear.weight)
    assert not ctx._worth_offloading(linear.weight.t())  # what F.linear saves for backward
    assert not ctx._worth_offloading(buffer[:32])
    assert not ctx._worth_offloading(torch.randn(8))  # 32 bytes
    assert not ctx._should_offload(torch.randn(64, 64))  # already on the CPU
