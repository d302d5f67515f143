"""The knowledge-distillation and QAT recipes on a tiny Llama on CPU, run in-process; every 2-rank run
shares one torchrun launch (tests/recipes/_inprocess.py).

- distillation works: a student distilled from a trained teacher ends closer to it (KL on held-out
  text) than the same student trained on cross-entropy alone (kd_ratio=0) for the same steps;
- data parallel equals one device: knowledge_distillation_distributed and qat_distributed on 2 gloo
  ranks x batch 1 give the losses and the saved weights of knowledge_distillation_single_device and
  qat_single_device at batch 2 (lr 1e-2, clipping, a cosine schedule and shuffling on; fake
  quantization from step 3); qat_lora_finetune_distributed has no single-device recipe, so its 2-rank
  run is checked against a 1-rank run of itself. Once fake quantization is on, the loss is not
  continuous in the weights, so that phase is compared where both hold the same weights (see the test);
- resume: the runs save at step 2 of 4 and a second run resumes from that save in the same
  output_dir; the resumed losses of steps 3-4 are the uninterrupted run's, bit for bit, on one
  device and on 2 ranks;
- QAT then convert: the quantize recipe converts the qat_single_device checkpoint; the generate
  recipe reloads the file (so does the post-training 8da4w quantizer) into a model whose logits are
  the fake-quantized model's, and generates what the trained model converted in this process generates.
"""

import copy
import re
import shutil

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from tests.recipes._inprocess import build_config, run_on_one_rank, run_on_two_ranks, run_recipe
from tests.recipes.utils import make_assets, model_overrides, RECIPE_MODEL
from torchtune.generation import generate
from torchtune.models.llama2 import llama2, llama2_tokenizer
from torchtune.training import FullModelHFCheckpointer
from torchtune.training.quantization import (
    Int8DynActInt4WeightQATQuantizer,
    Int8DynActInt4WeightQuantizer,
    load_quantized_model,
)

pytestmark = pytest.mark.integration

STEPS = 4  # default max_steps_per_epoch; the tests below set their own
DIMS = [f"{k}={v}" for k, v in RECIPE_MODEL.items()]


def _paths(assets, out, log_dir="logs"):
    shards = "[" + ",".join(assets["shards"]) + "]"
    return [
        f"output_dir={out}", f"checkpointer.checkpoint_dir={assets['ckpt']}", f"checkpointer.checkpoint_files={shards}",
        f"tokenizer.path={assets['ckpt'] / 'tokenizer.model'}", "tokenizer.max_seq_len=128",
        # Train on the prompt too: these short answers fall beyond the tiny tokenizer's 128 tokens.
        f"dataset.data_files={assets['data']}", "dataset.train_on_input=True", "seed=0", "log_every_n_steps=1",
        f"metric_logger.log_dir={out}/{log_dir}",
    ]


def _common(assets, out, *extra):
    return [*_paths(assets, out), "shuffle=False", "lr_scheduler=null", "clip_grad_norm=null",
            f"max_steps_per_epoch={STEPS}", *extra]


def _kd(assets, teacher, out, *extra):
    return [*_common(assets, out), *[f"model.{d}" for d in DIMS], *[f"teacher_model.{d}" for d in DIMS],
            "model.lora_rank=8", "model.lora_alpha=16", f"teacher_checkpointer.checkpoint_dir={teacher}",
            "optimizer.lr=1e-2", *extra]


def _float_model(folder):
    ckpt = FullModelHFCheckpointer(str(folder), ["model.safetensors.index.json"], "LLAMA2", str(folder / "reload"))
    model = llama2(**RECIPE_MODEL).eval()
    model.load_state_dict(ckpt.load_checkpoint()["model"])
    return model


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("kd_qat")
    assets = make_assets(root)
    # The teacher: the base model fine-tuned on the data (full fine-tuning, in-process).
    teacher = root / "teacher"
    run_recipe("full_finetune_single_device", "llama2/7B_full_low_memory", [
        *_common(assets, teacher, "batch_size=4", "max_steps_per_epoch=8"), "model=torchtune.models.llama2.llama2",
        *[f"model.{d}" for d in DIMS], "optimizer._component_=torch.optim.AdamW", "optimizer.lr=3e-3",
        "optimizer_in_bwd=False", "enable_activation_checkpointing=False", "enable_activation_offloading=False",
        "device=cpu", "dtype=fp32", "metric_logger._component_=torchtune.training.metric_logging.DiskLogger",
        "dataset._component_=torchtune.datasets.alpaca_dataset", "dataset.source=json", "dataset.packed=False",
    ])
    assets["teacher"] = teacher / "epoch_0"
    return assets


def _held_out_tokens(assets):
    tokenizer = llama2_tokenizer(str(assets["ckpt"] / "tokenizer.model"))
    texts = ["Reverse the words. the dog sat by a tree and the bird ran", "Reverse the words. mat a on cat the",
             "the river sang while park and dog ran on a mat", "bird tree in sang cat by the park"]
    rows = [tokenizer.encode(t, add_bos=True, add_eos=True)[:24] for t in texts]
    n = min(len(r) for r in rows)
    return torch.tensor([r[:n] for r in rows])


def _kl_to_teacher(teacher, student, tokens):
    with torch.no_grad():
        t, s = F.log_softmax(teacher(tokens), -1), F.log_softmax(student(tokens), -1)
    return (t.exp() * (t - s)).sum(-1).mean().item()


def test_distillation_brings_the_student_closer_to_the_teacher_than_cross_entropy(assets, tmp_path):
    kd, ce = tmp_path / "kd", tmp_path / "ce"
    for out, ratio in ((kd, 0.5), (ce, 0.0)):
        run_recipe("knowledge_distillation_single_device", "dev/tiny_kd_lora_single_device",
                   _kd(assets, assets["teacher"], out, "batch_size=4", "max_steps_per_epoch=8", f"kd_ratio={ratio}"))
    tokens = _held_out_tokens(assets)
    teacher = _float_model(assets["teacher"])
    kl_kd = _kl_to_teacher(teacher, _float_model(kd / "epoch_0"), tokens)
    kl_ce = _kl_to_teacher(teacher, _float_model(ce / "epoch_0"), tokens)
    kl_base = _kl_to_teacher(teacher, _float_model(assets["ckpt"]), tokens)
    print(f"KL(teacher || student) on held-out text: base {kl_base:.4f}, CE only {kl_ce:.4f}, KD {kl_kd:.4f}")
    assert kl_kd < kl_ce < kl_base, (kl_base, kl_ce, kl_kd)
    assert (kd / "epoch_0" / "adapter" / "adapter_config.json").is_file()


# ---------------------------------------------------------------- 2 ranks vs one device, and resume
SAVE_AT = 2  # of STEPS; the QAT runs switch fake quantization on here too
QAT_GROUP = 32  # divides every linear layer's input size (64 and 128)
QAT_ARGS = [f"quantizer.groupsize={QAT_GROUP}", f"fake_quant_after_n_steps={SAVE_AT}"]
LORA_ARGS = ["model.lora_rank=8", "model.lora_alpha=16"]

# family -> (reference recipe and config, 2-rank recipe and config, overrides of both). There is no
# single-device QAT-LoRA recipe: qat_lora_finetune_distributed's reference is a 1-rank run of itself.
FAMILIES = {
    "kd": ("knowledge_distillation_single_device", "dev/tiny_kd_lora_single_device",
           "knowledge_distillation_distributed", "dev/tiny_kd_lora_distributed",
           [*[f"teacher_model.{d}" for d in DIMS], *LORA_ARGS]),
    "qat": ("qat_single_device", "dev/tiny_qat_single_device", "qat_distributed", "dev/tiny_qat_distributed", QAT_ARGS),
    "qat_lora": ("qat_lora_finetune_distributed", "dev/tiny_qat_lora_distributed",
                 "qat_lora_finetune_distributed", "dev/tiny_qat_lora_distributed", [*QAT_ARGS, *LORA_ARGS]),
}


def _single_device(family):
    return not FAMILIES[family][0].endswith("_distributed")


def _parity(assets, family, out, batch_size, *, resume=False):
    """4 steps of ``batch_size`` per rank, saved at step 2 (the configs' schedule, clipping and shuffling);
    ``resume``: continue from that save, logging to ``resumed_logs``."""
    teacher = [f"teacher_checkpointer.checkpoint_dir={assets['teacher']}"] if family == "kd" else []
    return [*_paths(assets, out, "resumed_logs" if resume else "logs"), *[f"model.{d}" for d in DIMS],
            *FAMILIES[family][4], *teacher, f"batch_size={batch_size}", f"max_steps_per_epoch={STEPS}",
            f"save_every_n_steps={SAVE_AT}", "optimizer.lr=1e-2", "lr_scheduler.num_warmup_steps=0",
            f"resume_from_checkpoint={resume}"]


def _run_reference(assets, family, out, *, resume):
    recipe, config = FAMILIES[family][:2]
    args = _parity(assets, family, out, batch_size=2, resume=resume)
    if _single_device(family):
        run_recipe(recipe, config, args)
    else:
        run_on_one_rank(recipe, config, args)


@pytest.fixture(scope="module")
def parity_runs(assets, tmp_path_factory):
    """Per family: the reference at batch 2 ("one") and 2 ranks at batch 1 ("two"), each resumed from its
    step-2 save in the same folder (the reference only on one device: qat_lora resumes on 2 ranks); and
    the reference resumed from a copy of the 2-rank run's step-2 save ("cross")."""
    root = tmp_path_factory.mktemp("kd_qat_parity")
    runs = {family: {run: root / family / run for run in ("one", "two", "cross")} for family in FAMILIES}
    for family in FAMILIES:
        for resume in (False, True) if _single_device(family) else (False,):
            _run_reference(assets, family, runs[family]["one"], resume=resume)
    run_on_two_ranks([(recipe, config, _parity(assets, family, runs[family]["two"], batch_size=1, resume=resume))
                      for family, (_, _, recipe, config, _) in FAMILIES.items() for resume in (False, True)], root)
    for family in FAMILIES:
        cross, two = runs[family]["cross"], runs[family]["two"]
        for folder in (f"step_{SAVE_AT}", "recipe_state"):
            shutil.copytree(two / folder, cross / folder)
        _run_reference(assets, family, cross, resume=True)
    return runs


def _metrics(log_dir):
    """{step: {name: value}} from the DiskLogger file(s) in ``log_dir``."""
    steps = {}
    for f in sorted(log_dir.glob("*.txt")):
        for line in f.read_text().splitlines():
            m = re.match(r"Step (\d+) \| (.*)", line)
            if m:
                steps[int(m.group(1))] = {k: float(v) for k, v in (kv.split(":", 1) for kv in m.group(2).split())}
    return dict(sorted(steps.items()))


def _trained_tensors(folder, family):
    if family == "qat":
        return {k: v for f in sorted(folder.glob("*.safetensors")) for k, v in load_file(f).items()}
    return torch.load(folder / "adapter" / "adapter_model.pt", weights_only=True)


def _losses(metrics, steps):
    return [metrics[step]["loss"] for step in steps]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_two_ranks_equal_one_device_and_resume_exactly(parity_runs, family):
    runs = parity_runs[family]
    one, two = _metrics(runs["one"] / "logs"), _metrics(runs["two"] / "logs")
    cross = _metrics(runs["cross"] / "resumed_logs")
    steps, float_steps, resumed_steps = range(1, STEPS + 1), range(1, SAVE_AT + 1), range(SAVE_AT + 1, STEPS + 1)
    assert list(one) == list(two) == list(steps) and list(cross) == list(resumed_steps), (one, two, cross)
    if family == "kd":
        torch.testing.assert_close(_losses(two, steps), _losses(one, steps), atol=1e-5, rtol=0)
        # The single-device recipe resumes from the distributed recipe's save and continues its run.
        torch.testing.assert_close(_losses(cross, resumed_steps), _losses(two, resumed_steps), atol=1e-5, rtol=0)
    else:
        # Fake quantization (from step 3) rounds every weight to one of 16 levels of its group, so the loss
        # is not continuous in the weights: after 2 steps the runs' weights differ by float rounding (at most
        # 5e-6), which flips a few of those levels and moves the losses of steps 3-4 by up to 4e-3; a 1e-7
        # relative perturbation of one run's weights moves its fake-quantized loss by 3e-3 per token, its
        # float loss not at all (measured). So the float steps are compared here, and the fake-quantized
        # step where both runs hold the same weights: the reference recipe resumed from the 2-rank step-2
        # save ("cross") reproduces the 2-rank step 3, its loss (forward) and its gradient norm (backward).
        torch.testing.assert_close(_losses(two, float_steps), _losses(one, float_steps), atol=1e-5, rtol=0)
        for key in ("loss", "grad_norm"):
            torch.testing.assert_close(cross[SAVE_AT + 1][key], two[SAVE_AT + 1][key], atol=1e-5, rtol=1e-5, msg=key)
    # The step-2 saves (rank 0 gathers the shards). A weight whose first gradient is about AdamW's eps (1e-8)
    # takes a first step lr * g / (|g| + eps) set by the rounding of g: up to 1.4e-5 apart here (lr 1e-2).
    saved_one, saved_two = (_trained_tensors(runs[run] / f"step_{SAVE_AT}", family) for run in ("one", "two"))
    assert saved_one.keys() == saved_two.keys()
    for key, value in saved_one.items():
        torch.testing.assert_close(saved_two[key], value, atol=1e-4, rtol=0, msg=key)
    # Resumed from the step-2 save: steps 3-4 of the uninterrupted run (loss, lr, gradient norm), bit for bit.
    for run, full in (("one", one), ("two", two)) if _single_device(family) else (("two", two),):
        assert torch.load(runs[run] / "recipe_state" / "recipe_state.pt", weights_only=True)["steps_run"] == SAVE_AT
        resumed = _metrics(runs[run] / "resumed_logs")
        assert list(resumed) == list(resumed_steps), resumed
        for step, values in resumed.items():
            for key in ("loss", "lr", "grad_norm"):
                assert values[key] == full[step][key], (run, step, key)


# ---------------------------------------------------------------- QAT then convert, reload, generate
PROMPT = "the cat sat on"
N_NEW = 12


def _greedy_text(model, tokenizer):
    prompt = torch.tensor(tokenizer.encode(PROMPT, add_bos=True, add_eos=False))
    model.setup_caches(batch_size=1, dtype=torch.float32, decoder_max_seq_len=prompt.numel() + N_NEW)
    tokens, _ = generate(model, prompt, max_generated_tokens=N_NEW, temperature=0, pad_id=tokenizer.pad_id,
                         stop_tokens=tokenizer.stop_tokens)
    return tokenizer.decode(tokens[0].tolist())


def test_qat_checkpoint_converts_with_the_quantize_recipe_and_generates(assets, parity_runs, tmp_path):
    from recipes.generate import InferenceRecipe

    trained = parity_runs["qat"]["one"] / "epoch_0"  # qat_single_device, fake quantization on from step 3
    quantizer = ["quantizer._component_=torchtune.training.quantization.Int8DynActInt4WeightQATQuantizer",
                 f"quantizer.groupsize={QAT_GROUP}"]
    run_recipe("quantize", "quantization", [
        f"output_dir={tmp_path}", *model_overrides("torchtune.models.llama2.llama2"),
        f"checkpointer.checkpoint_dir={trained}", "checkpointer.checkpoint_files=[model.safetensors.index.json]",
        "device=cpu", "dtype=fp32", *quantizer])
    saved = tmp_path / "model-8da4w-qat.pt"
    assert saved.is_file()

    cfg = build_config("generation", [
        f"output_dir={tmp_path}", *model_overrides("torchtune.models.llama2.llama2"), *quantizer,
        "checkpointer._component_=torchtune.training.FullModelTorchTuneCheckpointer",
        f"checkpointer.checkpoint_dir={tmp_path}", f"checkpointer.checkpoint_files=[{saved.name}]",
        f"tokenizer.path={assets['ckpt'] / 'tokenizer.model'}", "device=cpu", "dtype=fp32", "seed=0",
        f"prompt={PROMPT}", "temperature=0", f"max_new_tokens={N_NEW}"])
    recipe = InferenceRecipe(cfg)
    recipe.setup(cfg)

    # Reference: the trained weights, fake-quantized as in training, converted here.
    qat = Int8DynActInt4WeightQATQuantizer(groupsize=QAT_GROUP)
    fake_quantized = qat.prepare(_float_model(trained))
    converted = qat.convert(copy.deepcopy(fake_quantized))
    tokens = _held_out_tokens(assets)
    with torch.no_grad():
        reloaded = recipe._model(tokens)
        torch.testing.assert_close(reloaded, converted(tokens), atol=0, rtol=0)
        torch.testing.assert_close(reloaded, fake_quantized(tokens), atol=1e-5, rtol=0)  # what training saw
        # The file also loads with the post-training quantizer of the same group size.
        ptq = load_quantized_model(llama2(**RECIPE_MODEL), torch.load(saved, weights_only=True),
                                   Int8DynActInt4WeightQuantizer(groupsize=QAT_GROUP), source=str(saved))
        torch.testing.assert_close(ptq(tokens), reloaded, atol=0, rtol=0)
    text = recipe.generate(cfg)
    assert text.startswith(PROMPT) and len(text) > len(PROMPT), text
    assert text == _greedy_text(converted, llama2_tokenizer(str(assets["ckpt"] / "tokenizer.model")))
