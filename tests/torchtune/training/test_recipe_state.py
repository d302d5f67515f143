import pytest
import torch

from torchtune import training
from torchtune.training import RecipeState


def _ckpt(**overrides):
    ckpt = {
        training.SEED_KEY: 7,
        training.EPOCHS_KEY: 1,
        training.TOTAL_EPOCHS_KEY: 3,
        training.STEPS_KEY: 10,
        training.OPT_KEY: {},
        training.DATALOADER_KEY: {"epoch": 1, "samples_consumed": 24, "seed": 7},
        training.SAMPLES_PER_STEP_KEY: 8,
    }
    ckpt.update(overrides)
    return ckpt


def test_samples_per_step_key_is_the_on_disk_name():
    assert training.SAMPLES_PER_STEP_KEY == "samples_per_step"


def test_restore_sets_progress():
    state = RecipeState(seed=7, total_epochs=3)
    state.restore(_ckpt())
    assert (state.epochs_run, state.global_step, state.steps_into_epoch) == (1, 10, 3)  # 24 samples / 8 per step


def test_restore_without_samples_per_step_counts_samples():
    # States written before the key existed: one sample per step.
    ckpt = _ckpt()
    del ckpt[training.SAMPLES_PER_STEP_KEY]
    state = RecipeState(seed=7, total_epochs=3)
    state.restore(ckpt)
    assert state.steps_into_epoch == 24


def test_restore_takes_the_checkpoint_seed_and_reseeds():
    state = RecipeState(seed=1, total_epochs=3)
    state.restore(_ckpt())
    assert state.seed == 7
    drawn = torch.rand(3)
    torch.manual_seed(7)
    torch.testing.assert_close(drawn, torch.rand(3), rtol=0, atol=0)


def test_restore_names_missing_keys():
    ckpt = _ckpt()
    del ckpt[training.STEPS_KEY], ckpt[training.OPT_KEY]
    with pytest.raises(KeyError, match=r"\['steps_run', 'optimizer'\]"):
        RecipeState(seed=7, total_epochs=3).restore(ckpt)


def test_restore_uses_given_keys():
    ckpt = _ckpt()
    del ckpt[training.OPT_KEY]  # broadcast progress: weights and optimizer stay on rank 0
    state = RecipeState(seed=7, total_epochs=3)
    state.restore(ckpt, keys=list(ckpt) + [training.OPT_KEY])
    assert state.global_step == 10


def test_resume_from_disabled_is_none():
    state = RecipeState(seed=7, total_epochs=3)
    assert state.resume_from(_ckpt(), False) is None
    assert state.global_step == 0


def test_state_dict_round_trip_and_keys():
    state = RecipeState(seed=3, total_epochs=2, max_steps_per_epoch=5, epochs_run=1, global_step=7, steps_into_epoch=2)
    torch.manual_seed(0)
    saved = state.state_dict(optimizer={"o": 1}, dataloader={"epoch": 1, "samples_consumed": 8, "seed": 3},
                             samples_per_step=4)
    assert set(saved) == {training.OPT_KEY, training.SEED_KEY, training.EPOCHS_KEY, training.TOTAL_EPOCHS_KEY,
                          training.MAX_STEPS_KEY, training.STEPS_KEY, training.DATALOADER_KEY, training.RNG_KEY,
                          "samples_per_step"}
    assert saved[training.MAX_STEPS_KEY] == 5
    torch.manual_seed(0)
    torch.testing.assert_close(saved[training.RNG_KEY], torch.get_rng_state(), rtol=0, atol=0)
    resumed = RecipeState(seed=3, total_epochs=2)
    resumed.restore(saved)
    assert (resumed.epochs_run, resumed.global_step, resumed.steps_into_epoch) == (1, 7, 2)
    with_lr = state.state_dict(optimizer={}, dataloader={}, samples_per_step=1, lr_scheduler={"last_epoch": 6})
    assert with_lr[training.LR_SCHEDULER_KEY] == {"last_epoch": 6}


def test_restore_rng_state():
    torch.manual_seed(5)
    ckpt = {training.RNG_KEY: torch.get_rng_state()}
    expected = torch.rand(2)
    torch.manual_seed(99)
    RecipeState.restore_rng_state(ckpt)
    torch.testing.assert_close(torch.rand(2), expected, rtol=0, atol=0)
    RecipeState.restore_rng_state(None)  # not resuming: nothing happens


def test_per_rank_rng_states_are_saved_and_one_process_resumes_from_rank_zero():
    # On one process gather_rng_states has nothing to gather; a 2-rank checkpoint resumed on one
    # process (another data split: not exact anyway) continues from rank 0's state (RNG_KEY).
    # Each rank taking its own entry is checked on 2 ranks in test_distributed_state.py.
    assert training.gather_rng_states() is None
    states = [torch.Generator().manual_seed(s).get_state() for s in (1, 2)]
    saved = RecipeState(seed=3, total_epochs=1).state_dict(optimizer={}, dataloader={}, samples_per_step=1,
                                                          rank_rng_states=states)
    assert training.RANK_RNG_KEY == "rng_state_per_rank" and len(saved[training.RANK_RNG_KEY]) == 2
    expected = torch.rand(2)  # what follows the state saved under RNG_KEY (this process's, at save time)
    RecipeState.restore_rng_state(saved)
    torch.testing.assert_close(torch.rand(2), expected, rtol=0, atol=0)
    # A list with one entry per rank of this (one-process) run: its entry is the one restored.
    RecipeState.restore_rng_state({training.RNG_KEY: states[0], training.RANK_RNG_KEY: [states[1]]})
    torch.testing.assert_close(torch.rand(2), torch.rand(2, generator=torch.Generator().manual_seed(2)),
                               rtol=0, atol=0)


def test_load_sampler_state_divides_by_world_size():
    sampler = training.StatefulDistributedSampler(list(range(16)), num_replicas=2, rank=1, shuffle=False, seed=0)
    training.load_sampler_state(sampler, {training.DATALOADER_KEY: {"epoch": 0, "samples_consumed": 6, "seed": 0}},
                                world_size=2)
    assert list(sampler) == [7, 9, 11, 13, 15]  # rank 1's indices 1, 3, ..., 15 after its 3 consumed


def test_check_adapter_resumed_names_the_file(tmp_path):
    training.check_adapter_resumed([training.ADAPTER_KEY], str(tmp_path))  # present: fine
    (tmp_path / "epoch_0").mkdir()
    with pytest.raises(FileNotFoundError, match=r"epoch_0/adapter/adapter_model\.pt is missing"):
        training.check_adapter_resumed([training.MODEL_KEY], str(tmp_path))


def test_check_adapter_resumed_prefers_the_saved_folder(tmp_path):
    (tmp_path / "epoch_0").mkdir()
    (tmp_path / "epoch_1").mkdir()
    (tmp_path / "recipe_state").mkdir()
    torch.save({"_checkpoint_epoch": 0, "_checkpoint_dir": "epoch_0"}, tmp_path / "recipe_state" / "recipe_state.pt")
    with pytest.raises(FileNotFoundError, match=r"epoch_0/adapter/adapter_model\.pt"):
        training.check_adapter_resumed([], str(tmp_path))


def test_load_recipe_checkpoint_single_device(tmp_path):
    class Checkpointer:
        def __init__(self, resume_from_checkpoint):
            self.resume = resume_from_checkpoint

        def load_checkpoint(self):
            return {training.MODEL_KEY: {"w": torch.ones(1)}, "resume": self.resume}

    cfg = {"_component_": f"{__name__}._make_checkpointer"}
    global _make_checkpointer
    _make_checkpointer = Checkpointer
    from omegaconf import OmegaConf

    checkpointer, ckpt = training.load_recipe_checkpoint(OmegaConf.create(cfg), True)
    assert isinstance(checkpointer, Checkpointer) and ckpt["resume"] is True
    assert training.CHECKPOINT_KEYS_KEY not in ckpt


_make_checkpointer = None
