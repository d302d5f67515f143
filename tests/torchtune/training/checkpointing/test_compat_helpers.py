"""Checkpoint helpers with torchtune's names: formatted shard names, newest folder, classifier heads."""
import pytest
import torch

from torchtune.training import disable_dropout, FullModelTorchTuneCheckpointer, MODEL_KEY
from torchtune.training.checkpointing import (
    FormattedCheckpointFiles,
    get_largest_iter_folder,
    update_state_dict_for_classifier,
)


def test_formatted_checkpoint_files_builds_every_shard_name():
    files = FormattedCheckpointFiles.from_dict({"filename_format": "model-{}-of-{}.safetensors", "max_filename": "00003"})
    assert files.build_checkpoint_filenames() == [
        "model-00001-of-00003.safetensors",
        "model-00002-of-00003.safetensors",
        "model-00003-of-00003.safetensors",
    ]
    with pytest.raises(ValueError, match="two"):
        FormattedCheckpointFiles("model-{}.safetensors", "00003")
    with pytest.raises(ValueError, match="exactly"):
        FormattedCheckpointFiles.from_dict({"filename_format": "m-{}-of-{}.bin"})


def test_largest_iter_folder_is_found_by_number_not_by_text(tmp_path):
    assert get_largest_iter_folder(tmp_path) is None
    for name in ("epoch_2", "epoch_10", "step_30"):
        (tmp_path / name).mkdir()
    (tmp_path / "epoch_99").write_text("a file, not a folder")
    assert get_largest_iter_folder(tmp_path) == "epoch_10"
    assert get_largest_iter_folder(str(tmp_path), pattern=r"^step_(\d+)") == "step_30"


def test_classifier_head_replaces_a_vocab_sized_output():
    head = torch.nn.Linear(8, 2, bias=False)
    params = [("output.weight", head.weight)]
    sd = {"output.weight": torch.zeros(50, 8), "output.bias": torch.zeros(50), "norm.scale": torch.ones(8)}
    update_state_dict_for_classifier(sd, params)
    assert set(sd) == {"output.weight", "norm.scale"}
    torch.testing.assert_close(sd["output.weight"], head.weight.detach())

    fitting = {"output.weight": torch.zeros(2, 8)}
    update_state_dict_for_classifier(fitting, params)
    assert torch.equal(fitting["output.weight"], torch.zeros(2, 8))  # right shape: kept
    update_state_dict_for_classifier(fitting, params, force_override=True)
    torch.testing.assert_close(fitting["output.weight"], head.weight.detach())

    missing = {}
    update_state_dict_for_classifier(missing, params)
    assert "output.weight" in missing
    with pytest.raises(ValueError, match="no 'output.weight'"):
        update_state_dict_for_classifier({}, [("norm.scale", head.weight)])


def test_disable_dropout_zeroes_every_dropout():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.3), torch.nn.Dropout(0.0))
    disable_dropout(model)
    assert [m.p for m in model if isinstance(m, torch.nn.Dropout)] == [0.0, 0.0]


class _Pickled:
    """Not a tensor or container: refused by weights_only loading."""


def test_torchtune_checkpointer_weights_only_flag(tmp_path):
    torch.save({"w": torch.ones(2), "extra": _Pickled()}, tmp_path / "model.pt")
    ckpt = FullModelTorchTuneCheckpointer(tmp_path, ["model.pt"], "LLAMA2", tmp_path / "out")
    with pytest.raises(ValueError, match="weights_only"):
        ckpt.load_checkpoint()
    state = ckpt.load_checkpoint(weights_only=False)
    assert torch.equal(state[MODEL_KEY]["w"], torch.ones(2))
    with pytest.raises(ValueError, match="weights_only"):  # the flag does not stick
        ckpt.load_checkpoint()
