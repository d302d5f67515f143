"""Checkpoint faults: a full disk during a save, and damaged checkpoints on load (seeded fuzz).

A save that fails must leave the previous checkpoint loadable and the recipe state pointing at
it; a damaged checkpoint must fail with an anticipated, one-line error that names the file.
"""

import errno
import random
import shutil
import time

import pytest
import torch

from torchtune._errors import anticipated_error_types, CheckpointWriteError
from torchtune.training import FullModelHFCheckpointer
from torchtune.training.checkpointing import _io

FUZZ_SECONDS = 8.0


def _checkpointer(ckpt_dir, out, resume=False):
    files = sorted(p.name for p in ckpt_dir.glob("model-*.safetensors"))
    return FullModelHFCheckpointer(str(ckpt_dir), files, "LLAMA2", str(out), resume_from_checkpoint=resume)


def _save(ckpt, model, step, **kw):
    state = {"model": model, "seed": 0, "epochs_run": 0, "total_epochs": 1, "steps_run": step,
             "optimizer": {}, "dataloader": {"samples_consumed": step}}
    return ckpt.save_checkpoint(state, epoch=0, intermediate_checkpoint=True, step=step, **kw)


def _full_disk_after(monkeypatch, nbytes):
    """Make safetensors writes fail with ENOSPC after writing ``nbytes`` of the file (a partial file)."""
    real = _io.save_file

    def save_file(tensors, filename, metadata=None):
        real(tensors, filename, metadata=metadata)
        with open(filename, "r+b") as f:
            f.truncate(nbytes)
        raise OSError(errno.ENOSPC, "No space left on device", filename)

    monkeypatch.setattr(_io, "save_file", save_file)


def test_a_full_disk_during_save_leaves_the_previous_checkpoint_intact(hf_llama, tmp_path, monkeypatch):
    ckpt_dir, _, _ = hf_llama
    out = tmp_path / "out"
    ckpt = _checkpointer(ckpt_dir, out)
    model = ckpt.load_checkpoint()["model"]
    _save(ckpt, model, 2, keep_last_n_checkpoints=1)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    trained = {k: v + 1 for k, v in model.items()}
    _full_disk_after(monkeypatch, 100)
    with pytest.raises(CheckpointWriteError) as failed:
        _save(ckpt, trained, 4, keep_last_n_checkpoints=1)
    assert failed.value.errno == errno.ENOSPC and isinstance(failed.value, OSError)
    message = str(failed.value)
    assert str(out / "step_4") in message and "No space left on device" in message and "intact" in message
    assert "\n" not in message
    # Nothing changed on disk: no partial step_4, no leftover temporary files, step_2 byte for byte.
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in out.iterdir()) == ["recipe_state", "step_2"]

    # Resuming picks the newest complete checkpoint: step_2, with its weights.
    monkeypatch.undo()
    resumed = _checkpointer(ckpt_dir, out, resume=True).load_checkpoint()
    assert resumed["steps_run"] == 2
    for k, v in model.items():
        torch.testing.assert_close(resumed["model"][k], v, atol=0, rtol=0)


def test_a_failed_recipe_state_write_keeps_the_resume_on_the_older_complete_checkpoint(hf_llama, tmp_path,
                                                                                        monkeypatch):
    ckpt_dir, _, _ = hf_llama
    out = tmp_path / "out"
    ckpt = _checkpointer(ckpt_dir, out)
    model = ckpt.load_checkpoint()["model"]
    _save(ckpt, model, 2, keep_last_n_checkpoints=1)

    real_save = torch.save

    def torch_save(obj, f, *a, **k):
        if "steps_run" in obj:  # the recipe state, written after the weights folder
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", torch_save)
    with pytest.raises(CheckpointWriteError):
        _save(ckpt, {k: v + 1 for k, v in model.items()}, 4, keep_last_n_checkpoints=1)
    monkeypatch.undo()
    # keep_last_n_checkpoints=1 did not prune step_2: the recipe state still belongs to it.
    assert (out / "step_2").is_dir()
    resumed = _checkpointer(ckpt_dir, out, resume=True).load_checkpoint()
    assert resumed["steps_run"] == 2
    for k, v in model.items():
        torch.testing.assert_close(resumed["model"][k], v, atol=0, rtol=0)


def _damage(rng, ckpt_dir):
    """Damage one shard of ``ckpt_dir`` at random; return what was done."""
    shards = sorted(ckpt_dir.glob("model-*.safetensors"))
    shard = rng.choice(shards)
    data = bytearray(shard.read_bytes())
    kind = rng.choice(["truncate", "flip_header", "missing", "dtype", "garbage_header_len"])
    if kind == "truncate":
        shard.write_bytes(bytes(data[:rng.randrange(0, len(data))]))
    elif kind == "flip_header":
        header_len = int.from_bytes(data[:8], "little")
        i = rng.randrange(8, 8 + header_len)
        data[i] ^= 1 << rng.randrange(8)
        shard.write_bytes(bytes(data))
    elif kind == "missing":
        shard.unlink()
    elif kind == "dtype":
        from safetensors.torch import load_file, save_file

        tensors = load_file(str(shard))
        dtype = rng.choice([torch.int64, torch.int8, torch.float16, torch.bool])
        save_file({k: v.to(dtype) for k, v in tensors.items()}, str(shard), metadata={"format": "pt"})
    else:
        data[:8] = rng.randrange(2**40, 2**63).to_bytes(8, "little")
        shard.write_bytes(bytes(data))
    return f"{kind} {shard.name}"


def test_fuzz_damaged_checkpoints_fail_with_a_one_line_error_naming_the_file(_hf_llama_master, tmp_path):
    src, _, _ = _hf_llama_master
    rng = random.Random(0)
    deadline = time.monotonic() + FUZZ_SECONDS
    kinds = set()
    for trial in range(40):
        if time.monotonic() > deadline and trial >= 10:
            break
        ckpt_dir = tmp_path / f"t{trial}"
        shutil.copytree(src, ckpt_dir)
        files = sorted(p.name for p in ckpt_dir.glob("model-*.safetensors"))
        done = _damage(rng, ckpt_dir)
        kinds.add(done.split()[0])
        try:
            sd = FullModelHFCheckpointer(str(ckpt_dir), files, "LLAMA2", str(tmp_path / "o")).load_checkpoint()
        except anticipated_error_types() as err:
            message = str(err)
            assert done.split()[1] in message, (done, message)
            assert "\n" not in message.strip(), (done, message)
        else:
            # Only a change of dtype can still load: the weights are then tensors of that dtype.
            assert done.startswith("dtype"), done
            assert all(isinstance(v, torch.Tensor) for v in sd["model"].values())
        shutil.rmtree(ckpt_dir)
    assert len(kinds) >= 4, kinds
