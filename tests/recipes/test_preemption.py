"""SIGTERM to a running `tune run` (one process, and two gloo ranks): a checkpoint at the step the
signal arrived in, exit status 143, and a resumed run that continues the uninterrupted loss sequence
bit for bit.

The signalled runs are real `tune run` subprocesses. The single-device reference and resume run in
this process (the recipe class, not the CLI, is what they exercise); the 2-rank resume and its
reference, an uninterrupted 2-rank run, share one launch. (One rank of batch 4 is no reference for
two of batch 2: it sums the same tokens in another order, equal only to float rounding, as
tests/recipes/test_lora_finetune_distributed.py checks.) The learning rate is constant (no
scheduler), so the losses of the first steps do not depend on how many steps a run is configured
for: the signalled runs are configured long, and stopped early. LoRA dropout is on and sequences are
not cut to one length, so each rank's generator draws masks of its own batch shapes: a resume is
exact only if every rank gets its own generator state back.
"""

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.recipes._inprocess import run_on_two_ranks
from tests.recipes.utils import common_overrides, make_assets, model_overrides, read_losses, write_alpaca_json
from torchtune import training

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LONG = 60  # steps a signalled run is configured for; it is stopped long before
TAIL = 2  # steps the resumed run trains after the checkpoint
REFERENCE_STEPS = 8


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("preempt_assets")
    out = make_assets(root)
    out["data"] = write_alpaca_json(root / "data_long.json", num_samples=4 * LONG)
    return out


def _overrides(assets, out, *extra):
    return [*common_overrides(assets, out), *model_overrides(), "model.lora_attn_modules=[q_proj,v_proj]",
            "model.lora_rank=4", "model.lora_alpha=8", "gradient_accumulation_steps=1", "optimizer.lr=1e-2",
            "optimizer.fused=False", "~lr_scheduler", "log_peak_memory_stats=False", "model.lora_dropout=0.1",
            # The samples are 138-179 tokens long: none is cut (to the 128 of common_overrides).
            "model.max_seq_len=256", "tokenizer.max_seq_len=256", *extra]


def _in_process(recipe_file, config, overrides):
    """Run a recipe class in this process on a built-in config plus overrides."""
    from torchtune.config import apply_overrides, find_config_file, load_config

    spec = importlib.util.spec_from_file_location(f"_recipe_{recipe_file}", ROOT / "recipes" / f"{recipe_file}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = apply_overrides(load_config(find_config_file(config)), overrides)
    recipe_cls = next(v for k, v in vars(module).items() if k.endswith("Recipe") or k.startswith("LoRAFinetune"))
    recipe = recipe_cls(cfg)
    recipe.setup(cfg)
    recipe.train()
    recipe.cleanup()


def _env():
    # The subprocess imports this checkout even where the installed package points elsewhere.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=path)


def _last_logged_step(log_dir: Path) -> int:
    steps = [int(m) for f in log_dir.glob("*.txt") for m in re.findall(r"^Step (\d+) \| loss", f.read_text(), re.M)]
    return max(steps, default=0)


def _child_pids(pid: int):
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _signal_when_training(args, out: Path, *, marker_step: int, freeze):
    """Start `tune run`, wait until ``marker_step`` is logged, SIGTERM it; return (proc result, step seen).

    ``freeze(pid)`` lists the processes to SIGSTOP while the log is read, so that the step seen
    and the signal belong to the same moment.
    """
    env = _env()
    proc = subprocess.Popen([sys.executable, "-m", "torchtune._cli.tune", *args], cwd=out, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while _last_logged_step(out / "logs") < marker_step:
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "the run never reached its marker step"
        time.sleep(0.05)
    frozen = freeze(proc.pid)
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    seen = _last_logged_step(out / "logs")
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)  # let the launcher forward the signal to the (stopped) ranks before they go on
    for pid in frozen:
        os.kill(pid, signal.SIGCONT)
    output = proc.communicate(timeout=120)[0]
    return proc.returncode, output, seen


def _saved_step(out: Path) -> int:
    state = torch.load(out / "recipe_state" / "recipe_state.pt", weights_only=True)
    return state["steps_run"]


@pytest.fixture(scope="module")
def reference(assets, tmp_path_factory):
    """Losses of the first REFERENCE_STEPS steps of an uninterrupted single-device run, global batch 4."""
    out = tmp_path_factory.mktemp("reference")
    _in_process("lora_finetune_single_device", "llama2/7B_lora_single_device",
                _overrides(assets, out, "batch_size=4", f"max_steps_per_epoch={REFERENCE_STEPS}"))
    return read_losses(out / "logs")


def _check_stopped(rc, output, out, seen, max_late):
    assert rc == 143, output
    step = _saved_step(out)
    assert seen <= step <= seen + max_late, (seen, step, output)
    assert _last_logged_step(out / "logs") == step  # no step trained after the checkpoint
    assert (out / f"step_{step}" / "adapter" / "adapter_model.pt").is_file()
    assert f"Checkpoint: {out / f'step_{step}'}" in output, output
    command = re.search(r"Resume with:\n\s+(.*)\n", output).group(1)
    assert command.startswith("tune run ") and command.endswith(" resume_from_checkpoint=True"), command
    assert "resume_from_checkpoint=True" not in command[:-len(" resume_from_checkpoint=True")]
    assert "Traceback" not in output, output
    return step, command


ENV_SECRET = "s3cr3t-from-the-environment-4711"
LITERAL_SECRET = "hf_" + "Q" * 30
SECRETS = ["hf_token=${oc.env:TUNE_TEST_SECRET}", f"wandb_api_key={LITERAL_SECRET}"]


def _assert_no_secret(text_or_bytes, where):
    data = text_or_bytes.encode() if isinstance(text_or_bytes, str) else text_or_bytes
    for secret in (ENV_SECRET, LITERAL_SECRET):
        assert secret.encode() not in data, f"{secret} found in {where}"


def test_sigterm_single_device_checkpoints_and_resume_continues_the_losses(assets, reference, tmp_path, monkeypatch,
                                                                             capfd):
    # The run's config also holds two secrets (one from the environment): no stream or file may show them.
    monkeypatch.setenv("TUNE_TEST_SECRET", ENV_SECRET)
    args = ["run", "lora_finetune_single_device", "--config", "llama2/7B_lora_single_device",
            *_overrides(assets, tmp_path, "batch_size=4", f"max_steps_per_epoch={LONG}", *SECRETS)]
    rc, output, seen = _signal_when_training(args, tmp_path, marker_step=1, freeze=lambda pid: [pid])
    _assert_no_secret(output, "the output of tune run")
    # The process was frozen between two log reads: the signal arrived in step seen + 1 at the latest.
    step, _ = _check_stopped(rc, output, tmp_path, seen, max_late=1)
    before = read_losses(tmp_path / "logs")
    assert step + TAIL <= len(reference), (step, len(reference))
    _in_process("lora_finetune_single_device", "llama2/7B_lora_single_device",
                _overrides(assets, tmp_path, "batch_size=4", f"max_steps_per_epoch={step + TAIL}",
                           "resume_from_checkpoint=True", *SECRETS))
    after = read_losses(tmp_path / "logs")
    assert after == reference[:step + TAIL], (before, after, reference)  # exact, step for step
    captured = capfd.readouterr()
    _assert_no_secret(captured.out + captured.err, "the resumed run's stdout/stderr")
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".txt" for p in files)  # the metric logs, with the (redacted) config
    for path in files:
        _assert_no_secret(path.read_bytes(), path)


def test_sigterm_two_ranks_agree_on_the_step_and_resume_continues_the_losses(assets, tmp_path):
    dist = ["run", "--nproc_per_node", "2", "lora_finetune_distributed", "--config", "llama2/7B_lora"]
    lce = "loss._component_=torchtune.modules.loss.LinearCrossEntropyLoss"  # as the single-device config
    run, reference = tmp_path / "run", tmp_path / "reference"
    run.mkdir(), reference.mkdir()
    args = [*dist, *_overrides(assets, run, lce, "batch_size=2", f"max_steps_per_epoch={LONG}")]
    rc, output, seen = _signal_when_training(args, run, marker_step=1, freeze=_child_pids)
    step, command = _check_stopped(rc, output, run, seen, max_late=2)
    assert command.startswith("tune run --nproc_per_node 2 lora_finetune_distributed"), command
    state = torch.load(run / "recipe_state" / "recipe_state.pt", weights_only=True)
    assert not torch.equal(*state[training.RANK_RNG_KEY])  # the ranks' generators have parted
    # The resume, then the uninterrupted reference, in one launch (tests/recipes/_inprocess.py).
    short = ["batch_size=2", f"max_steps_per_epoch={step + TAIL}"]
    run_on_two_ranks([("lora_finetune_distributed", "llama2/7B_lora",
                       _overrides(assets, run, lce, *short, "resume_from_checkpoint=True")),
                      ("lora_finetune_distributed", "llama2/7B_lora", _overrides(assets, reference, lce, *short))],
                     tmp_path)
    losses, expected = read_losses(run / "logs"), read_losses(reference / "logs")
    assert len(losses) == step + TAIL and losses == expected, (losses, expected)  # exact, step for step
