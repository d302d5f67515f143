"""Full state dicts in and out of FSDP2-sharded models, on 2 CPU ranks (gloo), against unsharded models;
and the per-rank generator states an intermediate checkpoint saves.

One spawned job runs every check (starting processes dominates the cost); each check is a function
below, and a failure in any of them fails the test with that rank's traceback.
"""
import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor

WORLD_SIZE = 2
# Big enough for NF4 weights to split into whole 4-bit blocks per rank (256 x 256 -> 4 scaler groups).
QLORA_DIMS = dict(vocab_size=128, num_layers=1, num_heads=4, num_kv_heads=2, embed_dim=256, intermediate_dim=512,
                  max_seq_len=32, lora_rank=4, lora_alpha=8)


def _sharded(build, **shard_kwargs):
    """``build()`` on the meta device, adapters trainable only if it has any, sharded per layer."""
    from torchtune import training

    with torch.device("meta"):
        model = build()
    mesh = init_device_mesh("cpu", (WORLD_SIZE,))
    shard_kwargs.setdefault("shard_conditions", [training.get_shard_conditions])
    training.shard_model(model, cpu_offload=False, dp_mesh=mesh, **shard_kwargs)
    return model


def _rope_init(model):
    for m in model.modules():
        if hasattr(m, "rope_init"):
            m.rope_init()


def check_qdora_loads_shards_and_gathers(rank):
    """NF4 base weights are sharded row-wise, quantized exactly as unsharded, and gather back dense."""
    from functools import partial

    from torchtune import training
    from torchtune.models.llama2 import lora_llama2
    from torchtune.modules.low_precision import is_nf4
    from torchtune.modules.peft import get_adapter_params, set_trainable_params

    build = partial(lora_llama2, ["q_proj", "v_proj"], apply_lora_to_mlp=True, quantize_base=True, use_dora=True,
                    **QLORA_DIMS)
    torch.manual_seed(0)
    dense = lora_llama2(["q_proj", "v_proj"], **{**QLORA_DIMS, "lora_rank": 4})  # source of dense base weights
    base_sd = {k: v for k, v in dense.state_dict().items() if "lora" not in k}
    ref = build()
    ref.load_state_dict(base_sd, strict=False)
    adapters = {k: torch.randn_like(v) * 0.1 for k, v in ref.state_dict().items() if "lora_" in k}
    ref.load_state_dict(adapters, strict=False)
    for m in ref.modules():
        if hasattr(m, "initialize_dora_magnitude"):
            m.initialize_dora_magnitude()

    model = _sharded(build)
    set_trainable_params(model, get_adapter_params(model))
    # Rank 1 passes nothing: rank 0's dict is the source.
    missing, unexpected = training.load_from_full_model_state_dict(model, dict(base_sd) if rank == 0 else {}, "cpu")
    assert unexpected == [] and missing and all(("lora_" in k or "magnitude" in k) for k in missing), missing
    zeros = {k: torch.zeros(v.shape) for k, v in ref.state_dict().items() if k.endswith("magnitude")}
    training.load_from_full_model_state_dict(model, {**adapters, **zeros}, "cpu", release_sd=False)
    for m in model.modules():
        if hasattr(m, "initialize_dora_magnitude"):
            m.initialize_dora_magnitude()  # on the DTensor shards
    _rope_init(model)
    training.validate_no_params_on_meta_device(model)

    q = model.layers[0].attn.q_proj.weight
    assert isinstance(q, DTensor) and is_nf4(q.to_local()) and q.to_local().shape == (128, 256)
    assert model.layers[0].attn.q_proj.lora_a.weight.requires_grad and not q.requires_grad

    full = training.gather_cpu_state_dict(model, rank == 0)
    expected = ref.state_dict()
    if rank == 0:
        assert full.keys() == expected.keys()
        for k, v in expected.items():
            torch.testing.assert_close(full[k], v, atol=1e-6, rtol=1e-6, msg=k)
    else:
        assert full == {}
    adapters_only = training.gather_cpu_state_dict(model, rank == 0, adapter_weights_only=True)
    if rank == 0:
        assert set(adapters_only) == {k for k in expected if "lora_" in k or "magnitude" in k}

    tokens = torch.randint(0, QLORA_DIMS["vocab_size"], (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), ref(tokens), atol=1e-5, rtol=1e-5)


def check_uneven_shards_and_optimizer_round_trip(rank):
    """Rows that do not divide by the world size; optimizer state gathered and loaded both ways."""
    from torchtune import training

    def build():
        return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))

    linear_units = [lambda name, m: isinstance(m, nn.Linear)]
    torch.manual_seed(0)
    ref = build()
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=0.1)
    model = _sharded(build, shard_conditions=linear_units)
    training.load_from_full_model_state_dict(model, {k: v.clone() for k, v in ref.state_dict().items()}, "cpu",
                                             strict=True)
    assert model[0].weight.to_local().shape == ((4, 5) if rank == 0 else (3, 5))
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)

    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(2))  # the same batch on both ranks
    for m, o in ((ref, ref_opt), (model, opt)):
        m(x).pow(2).sum().backward()
        o.step()
        o.zero_grad()
    full_opt = training.get_full_optimizer_state_dict(model, opt, rank == 0)
    if rank == 0:
        expected = ref_opt.state_dict()
        assert full_opt["param_groups"] == expected["param_groups"]
        for pid, state in expected["state"].items():
            for name, value in state.items():
                torch.testing.assert_close(full_opt["state"][pid][name], value, atol=1e-6, rtol=1e-6)
    full_model = training.gather_cpu_state_dict(model, rank == 0)
    if rank == 0:
        for k, v in ref.state_dict().items():
            torch.testing.assert_close(full_model[k], v, atol=1e-6, rtol=1e-6)

    # A fresh sharded copy resumed from the unsharded model's checkpoint steps like it.
    resumed = _sharded(build, shard_conditions=linear_units)
    training.load_from_full_model_state_dict(resumed, dict(ref.state_dict()) if rank == 0 else {}, "cpu")
    resumed_opt = torch.optim.AdamW(resumed.parameters(), lr=0.1)
    training.load_from_full_optimizer_state(resumed, resumed_opt, ref_opt.state_dict() if rank == 0 else {}, "cpu")
    assert resumed_opt.state_dict()["state"][0]["step"].device.type == "cpu"
    for m, o in ((ref, ref_opt), (resumed, resumed_opt)):
        m(x).pow(2).sum().backward()
        o.step()
    resumed_sd = training.gather_cpu_state_dict(resumed, rank == 0)
    if rank == 0:
        for k, v in ref.state_dict().items():
            torch.testing.assert_close(resumed_sd[k], v, atol=1e-6, rtol=1e-6)

    # A checkpoint of the wrong shape fails on every rank, instead of leaving one rank waiting.
    bad = _sharded(build, shard_conditions=linear_units)
    wrong = {**ref.state_dict(), "0.weight": torch.zeros(6, 5)}
    with pytest.raises(ValueError, match=r"0\.weight: checkpoint \[6, 5\] vs model \[7, 5\]"):
        training.load_from_full_model_state_dict(bad, wrong if rank == 0 else {}, "cpu")
    with pytest.raises(ValueError, match=r"missing \['2.bias'\]"):
        training.load_from_full_model_state_dict(bad, {k: v for k, v in ref.state_dict().items() if k != "2.bias"}
                                                 if rank == 0 else {}, "cpu", strict=True)


def check_nf4_weights_too_small_to_split_stay_whole(rank):
    """A frozen NF4 weight without whole 4-bit blocks per rank is replicated, loaded and gathered intact."""
    from torchtune import training
    from torchtune.modules.low_precision import is_nf4
    from torchtune.modules.peft import LoRALinear

    def build():
        return nn.Sequential(LoRALinear(64, 64, rank=4, alpha=8, quantize_base=True), nn.Linear(64, 64))

    torch.manual_seed(0)
    ref = build()
    dense = {k: v.clone() for k, v in ref.state_dict().items()}
    ref.load_state_dict(dense)  # both models quantize the same dense weight
    model = _sharded(build, shard_conditions=[lambda name, m: name == "1"])
    weight = model[0].weight
    assert is_nf4(weight) and not isinstance(weight, DTensor)
    training.load_from_full_model_state_dict(model, dict(dense) if rank == 0 else {}, "cpu", strict=True)
    assert is_nf4(model[0].weight) and not isinstance(model[0].weight, DTensor)
    full = training.gather_cpu_state_dict(model, rank == 0)
    x = torch.randn(3, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), atol=1e-6, rtol=1e-6)
    if rank == 0:
        for k, v in ref.state_dict().items():
            torch.testing.assert_close(full[k], v, atol=0, rtol=0, msg=k)


def check_initial_adapters_are_rank_independent(rank):
    """Fresh adapters come from each module's own init, on CPU, the same on every rank."""
    from torchtune import training
    from torchtune.models.llama2 import lora_llama2

    torch.manual_seed(3)
    with torch.device("meta"):
        model = lora_llama2(["q_proj"], **QLORA_DIMS)
    init = training.get_initial_adapter_state_dict(model)
    assert set(init) == {"layers.0.attn.q_proj.lora_a.weight", "layers.0.attn.q_proj.lora_b.weight"}
    lora_a, lora_b = init["layers.0.attn.q_proj.lora_a.weight"], init["layers.0.attn.q_proj.lora_b.weight"]
    assert lora_b.abs().sum() == 0 and lora_a.device.type == "cpu"
    bound = 1 / math.sqrt(QLORA_DIMS["embed_dim"])  # Kaiming-uniform with a=sqrt(5): U(-1/sqrt(fan_in), ..)
    assert 0.5 * bound < lora_a.abs().max() <= bound
    assert model.layers[0].attn.q_proj.lora_a.weight.is_meta  # the model is left as it was
    gathered = [torch.empty_like(lora_a) for _ in range(WORLD_SIZE)]
    dist.all_gather(gathered, lora_a)
    torch.testing.assert_close(gathered[0], gathered[1], atol=0, rtol=0)


def check_each_rank_resumes_its_own_generator(rank):
    """Ranks whose generators parted (dropout masks of their own batch shapes) each resume their own state."""
    from torchtune import training

    torch.manual_seed(0)
    torch.rand(10 + 90 * rank)  # rank 1 draws more, as it would for longer sequences
    states = training.gather_rng_states()
    assert len(states) == WORLD_SIZE and torch.equal(states[rank], torch.get_rng_state())
    assert not torch.equal(states[0], states[1])
    saved = training.RecipeState(seed=0, total_epochs=1).state_dict(optimizer={}, dataloader={}, samples_per_step=1,
                                                                   rank_rng_states=states)
    saved[training.RNG_KEY] = states[0]  # rank 0 writes the checkpoint; every rank gets its progress
    expected = torch.rand(3)
    torch.manual_seed(1)
    training.RecipeState.restore_rng_state(saved)
    torch.testing.assert_close(torch.rand(3), expected, atol=0, rtol=0)


CHECKS = (check_qdora_loads_shards_and_gathers, check_uneven_shards_and_optimizer_round_trip,
          check_nf4_weights_too_small_to_split_stay_whole, check_initial_adapters_are_rank_independent,
          check_each_rank_resumes_its_own_generator)


def _worker(rank, store_path):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=WORLD_SIZE)
    try:
        for check in CHECKS:
            check(rank)
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(120)
def test_sharded_state_dicts_on_two_ranks(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "store"),), nprocs=WORLD_SIZE)
