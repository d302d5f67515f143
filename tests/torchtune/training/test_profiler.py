import json

import pytest
import torch

from torchtune.training import DummyProfiler, setup_torch_profiler


def test_disabled_gives_a_dummy_profiler():
    profiler, settings = setup_torch_profiler()
    assert isinstance(profiler, DummyProfiler) and settings == {"enabled": False}
    with profiler as p:
        p.start()
        p.step()
        p.stop()


def test_enabled_writes_a_trace_after_the_active_steps(tmp_path):
    profiler, settings = setup_torch_profiler(
        enabled=True, cuda=True, wait_steps=1, warmup_steps=1, active_steps=1, output_dir=str(tmp_path)
    )
    assert settings.enabled and settings.output_dir == str(tmp_path)
    assert settings.cuda == torch.cuda.is_available()
    x = torch.randn(32, 32)
    profiler.start()
    for _ in range(4):
        with torch.profiler.record_function("tiny_step"):
            x = torch.tanh(x @ x)
        profiler.step()
    profiler.stop()
    trace = tmp_path / "iteration_3" / "rank0_trace.json"
    assert trace.exists()
    names = {event.get("name") for event in json.loads(trace.read_text())["traceEvents"]}
    assert "tiny_step" in names
    assert "aten::mm" in (tmp_path / "iteration_3" / "rank0_key_averages.txt").read_text()


def test_profile_memory_turns_on_what_it_needs_and_errors(tmp_path):
    _, settings = setup_torch_profiler(enabled=True, profile_memory=True, output_dir=str(tmp_path))
    assert settings.with_stack and settings.record_shapes
    with pytest.raises(ValueError, match="nothing to record"):
        setup_torch_profiler(enabled=True, cpu=False, cuda=False, output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="active_steps"):
        setup_torch_profiler(enabled=True, active_steps=0, output_dir=str(tmp_path))


def test_unset_schedule_uses_the_default_schedule(tmp_path):
    from torchtune.training import DEFAULT_SCHEDULE

    _, settings = setup_torch_profiler(enabled=True, warmup_steps=1, output_dir=str(tmp_path))
    assert settings.warmup_steps == 1
    assert (settings.wait_steps, settings.active_steps, settings.num_cycles) == (
        DEFAULT_SCHEDULE["wait_steps"],
        DEFAULT_SCHEDULE["active_steps"],
        DEFAULT_SCHEDULE["num_cycles"],
    )
    assert settings.xpu == (hasattr(torch, "xpu") and torch.xpu.is_available())
