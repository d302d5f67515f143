import pytest
from omegaconf import OmegaConf

from torchtune.training.checkpointing._files import expand_checkpoint_files, pick_resume_dir

_FOUR = [f"model-0000{i}-of-00004.safetensors" for i in range(1, 5)]


def test_filename_format_from_yaml_quoted_or_not():
    for max_filename in ('"00004"', "00004"):  # unquoted YAML reads 00004 as the int 4
        cfg = OmegaConf.create(
            f"checkpoint_files:\n  filename_format: model-{{}}-of-{{}}.safetensors\n  max_filename: {max_filename}\n"
        )
        assert expand_checkpoint_files(cfg.checkpoint_files, ".") == _FOUR


def test_list_and_single_name():
    assert expand_checkpoint_files(OmegaConf.create(["a.bin", "b.bin"]), ".") == ["a.bin", "b.bin"]
    assert expand_checkpoint_files("x.safetensors", ".") == ["x.safetensors"]


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"filename_format": "model-{}.safetensors", "max_filename": "00002"}, "two"),
        ({"filename_format": "m-{}-of-{}", "max_filename": "two"}, "digits"),
        ({"format": "m-{}-of-{}"}, "filename_format"),
        ([], "empty"),
        (3, "list"),
    ],
)
def test_malformed_checkpoint_files(bad, match):
    with pytest.raises(ValueError, match=match):
        expand_checkpoint_files(bad, "/ckpt")


def test_pick_resume_dir(tmp_path):
    for name in ("epoch_0", "epoch_1", "epoch_10", ".epoch_11.abc.tmp", "epoch_x"):
        (tmp_path / name).mkdir()
    assert pick_resume_dir(tmp_path, None) == tmp_path / "epoch_10"
    assert pick_resume_dir(tmp_path, 1) == tmp_path / "epoch_1"
    assert pick_resume_dir(tmp_path, 5) == tmp_path / "epoch_10"
    assert pick_resume_dir(tmp_path / "none", None) is None
