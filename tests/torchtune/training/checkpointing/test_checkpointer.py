"""Resume state, the Meta and torchtune formats, and atomic saves."""

import hashlib
import json
import random

import pytest
import torch

from tests.test_utils import TINY_LLAMA
from torchtune.models.llama2 import llama2
from torchtune.training.checkpointing import (
    ADAPTER_CONFIG,
    ADAPTER_KEY,
    DATALOADER_KEY,
    EPOCHS_KEY,
    LR_SCHEDULER_KEY,
    MAX_STEPS_KEY,
    MODEL_KEY,
    OPT_KEY,
    RNG_KEY,
    SEED_KEY,
    STEPS_KEY,
    TOTAL_EPOCHS_KEY,
    FullModelHFCheckpointer,
    FullModelMetaCheckpointer,
    FullModelTorchTuneCheckpointer,
)
from torchtune.training.checkpointing import _io


def _hf(ckpt_dir, out, **kwargs):
    return FullModelHFCheckpointer(ckpt_dir, ["model.safetensors.index.json"], "LLAMA2", out, **kwargs)


def _snapshot(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _recipe_state(model):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.zeros(1, 4, dtype=torch.long)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5)
    return {
        OPT_KEY: opt.state_dict(),
        SEED_KEY: 1234,
        EPOCHS_KEY: 1,
        TOTAL_EPOCHS_KEY: 3,
        MAX_STEPS_KEY: 10,
        STEPS_KEY: 10,
        DATALOADER_KEY: {"sampler": {"epoch": 1, "index": 5}},
        LR_SCHEDULER_KEY: sched.state_dict(),
        RNG_KEY: {"torch": torch.get_rng_state(), "python": random.getstate()},
    }


def _assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert a == b


def test_full_finetune_resume_round_trip(hf_llama, tmp_path):
    ckpt_dir, _, dims = hf_llama
    out = tmp_path / "out"
    model = llama2(**{k: dims[k] for k in TINY_LLAMA})
    base = _hf(ckpt_dir, out).load_checkpoint()[MODEL_KEY]
    model.load_state_dict(base)
    recipe = _recipe_state(model)  # takes an optimizer step, so weights differ from the base
    written = _hf(ckpt_dir, out).save_checkpoint(
        {MODEL_KEY: model.state_dict(), **recipe}, epoch=0, intermediate_checkpoint=True
    )
    assert out / "recipe_state" / "recipe_state.pt" in written

    state = _hf(ckpt_dir, out, resume_from_checkpoint=True).load_checkpoint()
    assert ADAPTER_KEY not in state
    _assert_same({k: state[k] for k in recipe}, recipe)
    _assert_same(state[MODEL_KEY], model.state_dict())  # resumed from epoch_0, not the base
    assert not torch.equal(state[MODEL_KEY]["layers.0.attn.q_proj.weight"], base["layers.0.attn.q_proj.weight"])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    opt.load_state_dict(state[OPT_KEY])  # the optimizer accepts what came back


def test_resume_uses_folder_saved_with_recipe_state(hf_llama, tmp_path):
    ckpt_dir, _, _ = hf_llama
    out = tmp_path / "out"
    ckpt = _hf(ckpt_dir, out)
    sd = ckpt.load_checkpoint()[MODEL_KEY]
    ckpt.save_checkpoint({MODEL_KEY: sd, EPOCHS_KEY: 1}, epoch=0, intermediate_checkpoint=True)
    # A crash after epoch_1 was written but before its recipe state: resume from epoch_0.
    changed = {k: v + 1.0 for k, v in sd.items()}
    ckpt.save_checkpoint({MODEL_KEY: changed}, epoch=1)
    state = _hf(ckpt_dir, out, should_load_recipe_state=True).load_checkpoint()
    _assert_same(state[MODEL_KEY], sd)
    assert set(state) == {MODEL_KEY, EPOCHS_KEY}  # bookkeeping keys are not handed back
    # A mid-epoch save of epoch 1 (epochs_run still 1) pairs with epoch_1.
    ckpt.save_checkpoint({MODEL_KEY: changed, EPOCHS_KEY: 1}, epoch=1, intermediate_checkpoint=True)
    state = _hf(ckpt_dir, out, resume_from_checkpoint=True).load_checkpoint()
    _assert_same(state[MODEL_KEY], changed)


@pytest.mark.parametrize("adapter_checkpoint", [None, "adapter_model.pt"])
def test_lora_resume_loads_base_plus_adapter(hf_llama, tmp_path, adapter_checkpoint):
    ckpt_dir, _, _ = hf_llama
    out = tmp_path / "out"
    ckpt = _hf(ckpt_dir, out)
    base = ckpt.load_checkpoint()[MODEL_KEY]
    adapter = {"layers.0.attn.q_proj.lora_a.weight": torch.randn(2, 64),
               "layers.0.attn.q_proj.lora_b.weight": torch.randn(64, 2)}
    merged = {k: v + 1.0 for k, v in base.items()}
    ckpt.save_checkpoint(
        {MODEL_KEY: merged, ADAPTER_KEY: adapter, ADAPTER_CONFIG: {"r": 2, "lora_alpha": 4}, SEED_KEY: 7,
         EPOCHS_KEY: 1},
        epoch=0, intermediate_checkpoint=True,
    )
    state = _hf(ckpt_dir, out, adapter_checkpoint=adapter_checkpoint, resume_from_checkpoint=True).load_checkpoint()
    _assert_same(state[ADAPTER_KEY], adapter)
    _assert_same(state[MODEL_KEY], base)  # the merged weights would apply the adapter twice
    assert state[SEED_KEY] == 7


def test_resume_without_recipe_state_names_the_file(hf_llama, tmp_path):
    ckpt_dir, _, _ = hf_llama
    with pytest.raises(FileNotFoundError, match="recipe_state.pt"):
        _hf(ckpt_dir, tmp_path / "out", resume_from_checkpoint=True).load_checkpoint()


def test_explicit_recipe_checkpoint(hf_llama, tmp_path):
    ckpt_dir, _, _ = hf_llama
    torch.save({SEED_KEY: 3, STEPS_KEY: 9}, tmp_path / "state.pt")
    state = _hf(ckpt_dir, tmp_path / "out", recipe_checkpoint=str(tmp_path / "state.pt"),
                resume_from_checkpoint=True).load_checkpoint()
    assert state[SEED_KEY] == 3 and state[STEPS_KEY] == 9


def test_missing_adapter_checkpoint_names_paths(hf_llama, tmp_path):
    ckpt_dir, _, _ = hf_llama
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        _hf(ckpt_dir, tmp_path / "out", adapter_checkpoint="nope.pt").load_checkpoint()


def test_failed_save_keeps_previous_epoch_folder(hf_llama, tmp_path, monkeypatch):
    ckpt_dir, _, _ = hf_llama
    out = tmp_path / "out"
    ckpt = _hf(ckpt_dir, out)
    sd = ckpt.load_checkpoint()[MODEL_KEY]
    ckpt.save_checkpoint({MODEL_KEY: sd}, epoch=0)
    before = _snapshot(out / "epoch_0")

    real_save_file = _io.save_file
    calls = []

    def dies_mid_write(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:  # second shard: leave half a file behind, as a crash would
            real_save_file(tensors, filename, metadata=metadata)
            with open(filename, "r+b") as f:
                f.truncate(100)
            raise OSError("disk full")
        real_save_file(tensors, filename, metadata=metadata)

    monkeypatch.setattr(_io, "save_file", dies_mid_write)
    changed = {k: v * 2 for k, v in sd.items()}
    for epoch in (0, 1):  # overwrite of a complete folder, and a new folder
        calls.clear()
        with pytest.raises(OSError, match="disk full"):
            ckpt.save_checkpoint({MODEL_KEY: changed}, epoch=epoch)
    assert _snapshot(out / "epoch_0") == before
    assert not (out / "epoch_1").exists()
    assert sorted(p.name for p in out.iterdir()) == ["epoch_0"]  # no staging folders left
    monkeypatch.undo()
    _assert_same(_hf(out / "epoch_0", tmp_path / "o2").load_checkpoint()[MODEL_KEY], sd)  # still loads


def test_failed_recipe_state_write_keeps_previous(hf_llama, tmp_path, monkeypatch):
    ckpt_dir, _, _ = hf_llama
    out = tmp_path / "out"
    ckpt = _hf(ckpt_dir, out)
    sd = ckpt.load_checkpoint()[MODEL_KEY]
    ckpt.save_checkpoint({MODEL_KEY: sd, SEED_KEY: 1}, epoch=0, intermediate_checkpoint=True)
    state_dir = out / "recipe_state"
    before = _snapshot(state_dir)
    real_save = torch.save

    def dies_mid_write(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        with open(f, "r+b") as fh:
            fh.truncate(10)
        raise OSError("killed")

    monkeypatch.setattr(torch, "save", dies_mid_write)
    with pytest.raises(OSError, match="killed"):
        ckpt.save_checkpoint({MODEL_KEY: sd, SEED_KEY: 2}, epoch=1, intermediate_checkpoint=True)
    assert _snapshot(state_dir) == before


def test_bad_save_arguments(hf_llama, tmp_path):
    ckpt_dir, _, _ = hf_llama
    ckpt = _hf(ckpt_dir, tmp_path / "out")
    with pytest.raises(ValueError, match="'model'"):
        ckpt.save_checkpoint({SEED_KEY: 1}, epoch=0)
    with pytest.raises(ValueError, match="'adapter'"):
        ckpt.save_checkpoint({MODEL_KEY: {}}, epoch=0, adapter_only=True)
    with pytest.raises(ValueError, match="epoch"):
        ckpt.save_checkpoint({MODEL_KEY: {}}, epoch=-1)


# ---- Meta consolidated.00.pth ----

def _meta_dir(tmp_path, model):
    from torchtune.models.convert_weights import tune_to_meta

    ckpt_dir = tmp_path / "meta"
    ckpt_dir.mkdir()
    torch.save(tune_to_meta(model.state_dict()), ckpt_dir / "consolidated.00.pth")
    (ckpt_dir / "params.json").write_text(json.dumps({"dim": 64, "n_layers": 2}))
    return ckpt_dir


def test_meta_checkpointer_round_trip(tmp_path):
    model = llama2(**TINY_LLAMA)
    ckpt_dir = _meta_dir(tmp_path, model)
    out = tmp_path / "out"
    ckpt = FullModelMetaCheckpointer(ckpt_dir, ["consolidated.00.pth"], "LLAMA2", out)
    sd = ckpt.load_checkpoint()[MODEL_KEY]
    _assert_same(sd, model.state_dict())
    adapter = {"layers.1.attn.v_proj.lora_a.weight": torch.randn(2, 64)}
    ckpt.save_checkpoint({MODEL_KEY: sd, ADAPTER_KEY: adapter, SEED_KEY: 5}, epoch=2, intermediate_checkpoint=True)
    saved = torch.load(out / "epoch_2" / "consolidated.00.pth", weights_only=True)
    assert torch.equal(saved["layers.0.attention.wq.weight"], sd["layers.0.attn.q_proj.weight"])
    assert (out / "epoch_2" / "params.json").is_file()
    _assert_same(torch.load(out / "epoch_2" / "adapter" / "adapter_model.pt", weights_only=True), adapter)
    state = FullModelMetaCheckpointer(ckpt_dir, ["consolidated.00.pth"], "LLAMA2", out,
                                      adapter_checkpoint="adapter_model.pt", resume_from_checkpoint=True
                                      ).load_checkpoint()
    assert state[SEED_KEY] == 5
    _assert_same(state[ADAPTER_KEY], adapter)


def test_meta_checkpointer_errors(tmp_path):
    ckpt_dir = _meta_dir(tmp_path, llama2(**TINY_LLAMA))
    with pytest.raises(ValueError, match="exactly one"):
        FullModelMetaCheckpointer(ckpt_dir, ["a.pth", "b.pth"], "LLAMA2", tmp_path / "o").load_checkpoint()
    path = ckpt_dir / "consolidated.00.pth"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"consolidated\.00\.pth is corrupt or truncated"):
        FullModelMetaCheckpointer(ckpt_dir, ["consolidated.00.pth"], "LLAMA2", tmp_path / "o").load_checkpoint()


# ---- torchtune layout ----

def test_torchtune_checkpointer_merges_files_and_resumes(tmp_path):
    from safetensors.torch import save_file

    sd = llama2(**TINY_LLAMA).state_dict()
    keys = list(sd)
    ckpt_dir = tmp_path / "tt"
    ckpt_dir.mkdir()
    save_file({k: sd[k] for k in keys[:5]}, ckpt_dir / "part1.safetensors")
    torch.save({k: sd[k] for k in keys[5:]}, ckpt_dir / "part2.pt")
    out = tmp_path / "out"
    ckpt = FullModelTorchTuneCheckpointer(ckpt_dir, ["part1.safetensors", "part2.pt"], "LLAMA2", out)
    loaded = ckpt.load_checkpoint()[MODEL_KEY]
    _assert_same(loaded, sd)
    changed = {k: v + 1 for k, v in sd.items()}
    ckpt.save_checkpoint({MODEL_KEY: changed, EPOCHS_KEY: 1}, epoch=0, intermediate_checkpoint=True)
    assert (out / "epoch_0" / "model.safetensors").is_file()
    resumed = FullModelTorchTuneCheckpointer(ckpt_dir, ["part1.safetensors", "part2.pt"], "LLAMA2", out,
                                             resume_from_checkpoint=True).load_checkpoint()
    _assert_same(resumed[MODEL_KEY], changed)


def test_torchtune_checkpointer_refuses_duplicate_keys(tmp_path):
    ckpt_dir = tmp_path / "tt"
    ckpt_dir.mkdir()
    torch.save({"norm.scale": torch.ones(4)}, ckpt_dir / "a.pt")
    torch.save({"norm.scale": torch.ones(4)}, ckpt_dir / "b.pt")
    with pytest.raises(ValueError, match=r"norm\.scale.*a\.pt.*b\.pt"):
        FullModelTorchTuneCheckpointer(ckpt_dir, ["a.pt", "b.pt"], "LLAMA2", tmp_path / "o").load_checkpoint()


def test_step_folders_resume_from_their_own_folder_and_prune(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    model = llama2(**TINY_LLAMA)
    torch.save(model.state_dict(), src / "model.pt")
    out = tmp_path / "out"
    ckpt = FullModelTorchTuneCheckpointer(src, ["model.pt"], "LLAMA2", out)
    saved = {}
    for step in (2, 4, 6):
        sd = {k: torch.full_like(v, float(step)) for k, v in model.state_dict().items()}
        saved[step] = sd
        ckpt.save_checkpoint({MODEL_KEY: sd, SEED_KEY: 0, STEPS_KEY: step}, epoch=0,
                             intermediate_checkpoint=True, step=step, keep_last_n_checkpoints=2)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("step_")) == ["step_4", "step_6"]

    resumed = FullModelTorchTuneCheckpointer(src, ["model.pt"], "LLAMA2", out, resume_from_checkpoint=True)
    state = resumed.load_checkpoint()
    assert state[STEPS_KEY] == 6
    key = "tok_embeddings.weight"
    torch.testing.assert_close(state[MODEL_KEY][key], saved[6][key])
    assert "_checkpoint_dir" not in state and "_checkpoint_epoch" not in state
