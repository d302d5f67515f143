"""Checked reads and atomic writes."""

import json
import struct

import pytest
import torch
from safetensors.torch import save_file

from torchtune.training.checkpointing._io import (
    format_size,
    load_any,
    load_safetensors,
    save_json,
    save_safetensors,
    staged_dir,
    torch_load,
)


@pytest.fixture
def st_file(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.randn(64, 64), "b": torch.randn(8)}, str(path))
    return path


@pytest.mark.parametrize(
    "damage",
    ["truncated_data", "truncated_header", "tiny", "bad_json", "header_too_long", "bad_structure"],
)
def test_damaged_safetensors_is_named(st_file, damage):
    data = st_file.read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    damaged = {
        "truncated_data": data[: len(data) // 2],
        "truncated_header": data[: 8 + header_len // 2],
        "tiny": data[:5],
        "bad_json": data[:8] + b"\xff" * header_len + data[8 + header_len:],
        "header_too_long": struct.pack("<Q", 10**12) + data[8:],
        "bad_structure": struct.pack("<Q", 9) + b'{"a": 1}\n',
    }[damage]
    st_file.write_bytes(damaged)
    with pytest.raises(ValueError, match=r"w\.safetensors is corrupt or truncated"):
        load_safetensors(st_file)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        load_safetensors(tmp_path / "nothing.safetensors")
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        torch_load(tmp_path / "nothing.pt")


def test_truncated_torch_file_is_named(tmp_path):
    path = tmp_path / "x.bin"
    torch.save({"a": torch.randn(128, 128)}, path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ValueError, match=r"x\.bin is corrupt or truncated"):
        load_any(path)


def test_torch_load_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"obj": torch.optim.SGD}, path)  # a class: pickled by reference, refused by weights_only
    with pytest.raises(ValueError, match="weights_only"):
        torch_load(path)


def test_save_safetensors_handles_views_and_reports_size(tmp_path):
    base = torch.randn(6, 4)
    path = tmp_path / "v.safetensors"
    size = save_safetensors({"top": base[:3], "t": base.t()}, path)
    assert size == path.stat().st_size
    loaded = load_safetensors(path)
    assert torch.equal(loaded["top"], base[:3]) and torch.equal(loaded["t"], base.t())
    assert [p.name for p in tmp_path.iterdir()] == ["v.safetensors"]


def test_save_json_is_atomic_on_error(tmp_path):
    path = tmp_path / "c.json"
    save_json({"a": 1}, path)
    with pytest.raises(TypeError):
        save_json({"a": object()}, path)
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"]


def test_staged_dir_replaces_whole_folder(tmp_path):
    final = tmp_path / "epoch_0"
    with staged_dir(final) as stage:
        (stage / "old.txt").write_text("old")
    with staged_dir(final) as stage:
        (stage / "new.txt").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_0"]


def test_format_size():
    assert format_size(512) == "512 B"
    assert format_size(3 * 1024**2 // 2) == "1.50 MiB"
    assert format_size(5 * 1024**4) == "5120.00 GiB"
