"""The distillation recipe on a tiny Llama on CPU, run in-process: a student distilled from a trained
teacher ends closer to it (KL on held-out text) than the same student trained on cross-entropy alone
(kd_ratio=0) for the same steps."""

import pytest
import torch
import torch.nn.functional as F

from tests.recipes._inprocess import run_recipe
from tests.recipes.utils import RECIPE_MODEL, make_assets
from torchtune.models.llama2 import llama2, llama2_tokenizer
from torchtune.training import FullModelHFCheckpointer

pytestmark = pytest.mark.integration

STEPS = 4  # default max_steps_per_epoch; the tests below set their own
DIMS = [f"{k}={v}" for k, v in RECIPE_MODEL.items()]


def _common(assets, out, *extra):
    shards = "[" + ",".join(assets["shards"]) + "]"
    return [
        f"output_dir={out}", f"checkpointer.checkpoint_dir={assets['ckpt']}", f"checkpointer.checkpoint_files={shards}",
        f"tokenizer.path={assets['ckpt'] / 'tokenizer.model'}", "tokenizer.max_seq_len=128",
        # Train on the prompt too: these short answers fall beyond the tiny tokenizer's 128 tokens.
        f"dataset.data_files={assets['data']}", "dataset.train_on_input=True", "seed=0", "shuffle=False",
        "lr_scheduler=null", "log_every_n_steps=1",
        f"metric_logger.log_dir={out}/logs", "clip_grad_norm=null", f"max_steps_per_epoch={STEPS}", *extra,
    ]


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
