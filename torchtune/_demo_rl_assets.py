"""Offline assets for the tiny GRPO/PPO configs: a verifiable arithmetic task, a tokenizer, a model.

``python -m torchtune._demo_rl_assets --output-dir ./grpo_demo`` writes, deterministically:
``base/`` (a random-init tiny Llama2-architecture model in Hugging Face layout and a SentencePiece
tokenizer whose digits are single tokens), ``reward/`` (a synthetic reward model for PPO: +1 when a
response ends in "7", else -1) and ``prompts.json`` (rows ``{"prompt": "3+4=", "answer":
"7"}``). The task is small enough that LoRA GRPO learns it on a CPU in under a minute.
"""

import argparse
import json
import random
from pathlib import Path
from typing import Dict, List

from torchtune._demo_assets import write_hf_checkpoint

# A model that learns the task quickly on CPU; vocab matches the tokenizer below.
TOY_MODEL = dict(vocab_size=15, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=64, intermediate_dim=128,
                 max_seq_len=32)


def make_arithmetic_prompts(num_prompts: int = 256, max_operand: int = 4, seed: int = 0) -> List[Dict[str, str]]:
    """Addition questions ``"a+b="`` with single-digit sums, and their answers.

    Args:
        num_prompts (int): rows to write (drawn with replacement from every ``a+b`` pair). Default 256.
        max_operand (int): operands are in ``0..max_operand``. Default 4.
        seed (int): sampling seed. Default 0.

    Returns:
        List[Dict[str, str]]: ``{"prompt", "answer"}`` rows.
    """
    rng = random.Random(seed)
    rows = []
    for _ in range(num_prompts):
        a, b = rng.randint(0, max_operand), rng.randint(0, max_operand)
        rows.append({"prompt": f"{a}+{b}=", "answer": str(a + b)})
    return rows


def train_digit_tokenizer(model_prefix: Path, vocab_size: int = TOY_MODEL["vocab_size"]) -> Path:
    """A SentencePiece model over digits, ``+``, ``=`` and a few words, each digit one token."""
    import sentencepiece as spm

    text_file = Path(f"{model_prefix}.txt")
    rng = random.Random(0)
    lines = [f"{rng.randint(0, 99)}+{rng.randint(0, 99)}={rng.randint(0, 198)}" for _ in range(500)]
    text_file.write_text("\n".join(lines))
    spm.SentencePieceTrainer.train(
        input=str(text_file), model_prefix=str(model_prefix), vocab_size=vocab_size, model_type="bpe",
        byte_fallback=False, bos_id=1, eos_id=2, unk_id=0, pad_id=-1, character_coverage=1.0, num_threads=1,
        minloglevel=2, split_digits=True, normalization_rule_name="identity", add_dummy_prefix=False,
        hard_vocab_limit=False,
    )
    text_file.unlink()
    return Path(f"{model_prefix}.model")


def write_toy_rl_assets(out_dir: Path, num_prompts: int = 256, max_operand: int = 2, seed: int = 0) -> Dict[str, Path]:
    """Write ``base/`` (model + tokenizer.model), ``reward/`` and ``prompts.json`` under ``out_dir``.

    Returns:
        Dict[str, Path]: ``ckpt`` (the model folder), ``tokenizer``, ``prompts`` and ``reward``.
    """
    out_dir = Path(out_dir)
    ckpt = write_hf_checkpoint(out_dir / "base", seed=seed, **TOY_MODEL)
    tokenizer = train_digit_tokenizer(ckpt / "tokenizer")
    prompts = out_dir / "prompts.json"
    prompts.write_text(json.dumps(make_arithmetic_prompts(num_prompts, max_operand=max_operand, seed=seed)))
    # PPO's reward model: +1 when a response ends in the digit 7 (tokenizer id of "7").
    import sentencepiece as spm

    seven = spm.SentencePieceProcessor(model_file=str(tokenizer)).piece_to_id("7")
    reward = write_toy_reward_model(out_dir / "reward", rewarded_token=seven, seed=seed)
    return {"ckpt": ckpt, "tokenizer": tokenizer, "prompts": prompts, "reward": reward}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="./grpo_demo")
    write_toy_rl_assets(Path(parser.parse_args().output_dir))


def write_toy_reward_model(out_dir: Path, rewarded_token: int, seed: int = 0) -> Path:
    """A reward model (``LlamaForSequenceClassification`` layout) scoring +1 when the last token is ``rewarded_token``.

    Its layers add nothing to the residual stream (zero attention-output and down projections), so
    the score at a position depends only on that position's token: the embedding of
    ``rewarded_token`` is ``[1, 1, 0, ...]``, every other embedding ``[-1, 1, 0, ...]``, and the head
    reads the first coordinate after the final RMSNorm, scaled to give exactly +1 / -1. A synthetic
    reward for PPO tests and the tiny PPO config.

    Args:
        out_dir (Path): receives ``config.json`` and ``model.safetensors`` (``model_type: REWARD``).
        rewarded_token (int): the token id that earns +1.
        seed (int): initialisation seed of the (inert) layer weights. Default 0.

    Returns:
        Path: ``out_dir``.
    """
    import math

    import torch
    from safetensors.torch import save_file

    from torchtune.models.llama2 import llama2_classifier
    from torchtune.rlhf.utils import reward_tune_to_hf

    d = dict(TOY_MODEL, norm_eps=1e-5, rope_base=10000.0)
    torch.manual_seed(seed)
    model = llama2_classifier(num_classes=1, **d)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("attn.output_proj.weight") or name.endswith("mlp.w2.weight"):
                p.zero_()
            elif p.dim() > 1:
                p.normal_(0.0, 0.02)
        emb = model.tok_embeddings.weight
        emb.zero_()
        emb[:, 1] = 1.0
        emb[:, 0] = -1.0
        emb[rewarded_token, 0] = 1.0
        model.norm.scale.fill_(1.0)
        head = model.output.weight
        head.zero_()
        # After RMSNorm the first coordinate is +-1 / sqrt(2 / dim).
        head[0, 0] = math.sqrt(2.0 / d["embed_dim"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sd = reward_tune_to_hf(model.state_dict(), num_heads=d["num_heads"], num_kv_heads=d["num_kv_heads"],
                           dim=d["embed_dim"])
    save_file({k: v.contiguous() for k, v in sd.items()}, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    config = {
        "architectures": ["LlamaForSequenceClassification"], "model_type": "llama", "num_labels": 1,
        "vocab_size": d["vocab_size"], "hidden_size": d["embed_dim"], "intermediate_size": d["intermediate_dim"],
        "num_hidden_layers": d["num_layers"], "num_attention_heads": d["num_heads"],
        "num_key_value_heads": d["num_kv_heads"], "max_position_embeddings": d["max_seq_len"],
        "rms_norm_eps": d["norm_eps"], "rope_theta": d["rope_base"], "hidden_act": "silu", "pad_token_id": 0,
        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32",
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    return out_dir
