import pytest
import torch

from torchtune.training import get_dtype, set_default_dtype, validate_expected_param_dtype, verify_bf16_support
from torchtune.training import precision


@pytest.mark.parametrize(
    "name, dtype", [(None, torch.float32), ("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp64", torch.float64)]
)
def test_get_dtype_on_cpu(name, dtype):
    assert get_dtype(name, device=torch.device("cpu")) == dtype


def test_get_dtype_accepts_torch_dtype_and_refuses_fp16_for_training():
    assert get_dtype(torch.bfloat16, device="cpu") == torch.bfloat16
    with pytest.raises(ValueError, match="fp16 is not supported for training"):
        get_dtype("fp16", device="cpu")
    assert get_dtype("fp16", device="cpu", allow_fp16=True) == torch.float16
    with pytest.raises(ValueError, match="'float8'"):
        get_dtype("float8")
    with pytest.raises(ValueError, match="not a floating-point"):
        get_dtype(torch.int8)


def test_bf16_on_unsupported_device_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(precision, "verify_bf16_support", lambda device=None: False)
    with pytest.raises(RuntimeError, match="does not support bf16.*dtype=fp32"):
        get_dtype("bf16", device="cuda")


def test_verify_bf16_support_cpu():
    assert verify_bf16_support("cpu")


def test_set_default_dtype_restores_even_on_error():
    before = torch.get_default_dtype()
    with set_default_dtype(torch.bfloat16):
        assert torch.nn.Linear(2, 2).weight.dtype == torch.bfloat16
    assert torch.get_default_dtype() == before
    with pytest.raises(KeyError):
        with set_default_dtype(torch.float64):
            raise KeyError("boom")
    assert torch.get_default_dtype() == before


def test_validate_expected_param_dtype_names_the_param():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    validate_expected_param_dtype(model.named_parameters(), torch.float32)
    model[1].bfloat16()
    with pytest.raises(ValueError, match="'1.weight' has dtype torch.bfloat16, expected torch.float32"):
        validate_expected_param_dtype(model.named_parameters(), torch.float32)
    validate_expected_param_dtype(model.named_parameters(), torch.float32, exclude_param_names=["1."])
    with pytest.raises(ValueError, match="'1.bias'"):
        validate_expected_param_dtype(model.named_parameters(), torch.float32, ["weight"])


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_bf16_instructions_warns_to_use_fp32(monkeypatch, native):
    warnings = []
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(precision._log, "warning", warnings.append)
    assert get_dtype("bf16", device="cpu") == torch.bfloat16
    assert get_dtype("fp32", device="cpu") == torch.float32
    if native:
        assert warnings == []
    else:
        assert len(warnings) == 1 and "emulated" in warnings[0] and "dtype=fp32" in warnings[0]


def test_cpu_bf16_detection_matches_the_cpu_flags():
    import pathlib

    flags = pathlib.Path("/proc/cpuinfo")
    if not flags.exists():
        pytest.skip("no /proc/cpuinfo")
    text = flags.read_text()
    assert precision.cpu_has_native_bf16() == ("avx512_bf16" in text or "amx_tile" in text)
