import pytest
import torch
from omegaconf import OmegaConf

from torchtune import training


class _Tokenizer:
    pad_id = 0


def toy_dataset(tokenizer, lengths, packed=False):
    """Samples whose tokens are 1..n and labels equal tokens (``packed`` is only read by the recipe side)."""
    return [{"tokens": list(range(1, n + 1)), "labels": list(range(1, n + 1))} for n in lengths]


def _cfg(lengths, **kw):
    return OmegaConf.create({"_component_": f"{__name__}.toy_dataset", "lengths": lengths, **kw})


def test_padded_batches_and_drop_last():
    sampler, loader = training.build_sft_dataloader(_cfg([2, 3, 1]), _Tokenizer(), batch_size=2, shuffle=False,
                                                    seed=0, ignore_index=-100)
    batches = list(loader)
    assert len(batches) == 1  # the third sample is dropped
    assert batches[0]["tokens"].tolist() == [[1, 2, 0], [1, 2, 3]]
    assert batches[0]["labels"].tolist() == [[1, 2, -100], [1, 2, 3]]
    assert isinstance(sampler, training.StatefulDistributedSampler)


def test_a_new_iterator_leaves_the_global_generator_alone():
    # A resumed run restores the global generator, then starts an iterator mid-epoch; the run it
    # continues started its iterator before that state was saved. Dropout masks would part.
    _, loader = training.build_sft_dataloader(_cfg([1, 2]), _Tokenizer(), batch_size=1, shuffle=True, seed=0,
                                              ignore_index=-100)
    before = torch.get_rng_state()
    next(iter(loader))
    assert torch.equal(torch.get_rng_state(), before)


def test_list_of_datasets_is_concatenated_in_order():
    cfg = OmegaConf.create([_cfg([1]), _cfg([2])])
    _, loader = training.build_sft_dataloader(cfg, _Tokenizer(), batch_size=1, shuffle=False, seed=0,
                                              ignore_index=-100)
    assert [b["tokens"].tolist() for b in loader] == [[[1]], [[1, 2]]]


def test_group_by_length_uses_length_grouped_sampler_on_every_rank():
    lengths = [1, 8, 2, 7, 3, 6, 4, 5]
    for rank in (0, 1):
        sampler, loader = training.build_sft_dataloader(
            _cfg(lengths), _Tokenizer(), batch_size=2, shuffle=True, seed=0, ignore_index=-100,
            group_by_length=True, num_replicas=2, rank=rank)
        assert isinstance(sampler, training.LengthGroupedSampler)
        assert sampler.num_replicas == 2 and sampler.rank == rank
        assert len(loader) == 2


def test_group_by_length_refuses_packed():
    with pytest.raises(ValueError, match="group_by_length"):
        training.build_sft_dataloader(_cfg([1, 2], packed=True), _Tokenizer(), batch_size=1, shuffle=False, seed=0,
                                      ignore_index=-100, group_by_length=True)


def test_setup_sft_data_reads_the_recipe_keys():
    cfg = OmegaConf.create({"dataset": _cfg([1, 2, 3, 4]), "shuffle": False, "batch_size": 2,
                            "dataset_val": _cfg([5, 6])})
    data = training.setup_sft_data(cfg, _Tokenizer(), ignore_index=-100, seed=0)
    assert len(data.dataloader) == 2 and len(data.val_dataloader) == 1
    assert training.setup_sft_data(OmegaConf.create({**cfg, "dataset_val": None}), _Tokenizer(), ignore_index=-100,
                                   seed=0).val_dataloader is None


@pytest.mark.parametrize("batches, accum, cap, expected", [(10, 1, None, 10), (10, 3, None, 3), (10, 2, 4, 4)])
def test_steps_per_epoch(batches, accum, cap, expected):
    assert training.get_steps_per_epoch(batches, accum, cap) == expected


def test_steps_per_epoch_zero_raises():
    with pytest.raises(ValueError, match="Each of the 2 ranks gets 1 batches"):
        training.get_steps_per_epoch(1, 2, world_size=2)
