"""A tiny Qwen-style byte-level BPE written as ``vocab.json`` + ``merges.txt`` (trained with the
``tokenizers`` library, with Qwen's NFC normalizer and pre-tokenization regex) and loaded by
transformers' ``Qwen2Tokenizer`` (the class Qwen's Hub repos name), whose ``save_pretrained`` writes
the equivalent ``tokenizer.json`` with the family's special tokens appended after the vocabulary."""

from pathlib import Path
from typing import Dict, List

from tests.test_utils.tokenizer_fixtures import tiny_corpus

# Written out here rather than imported, so that a change to ours would be caught.
QWEN_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

QWEN2_5_EXTRA = ["<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>",
                 "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>",
                 "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
                 "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]
QWEN3_EXTRA = QWEN2_5_EXTRA + ["<tool_response>", "</tool_response>", "<think>", "</think>"]

_EXTRA_TEXT = [
    "You are a helpful assistant. You are Qwen, created by Alibaba Cloud.",
    '{"name": "get_weather", "arguments": {"city": "Paris"}}',
    "Let me think step by step: 2 + 2 = 4, so the answer is 4.",
    "def add(a, b):\n    return a + b\n\n\nprint(add(1, 2))",
]


def write_qwen_tokenizer_files(directory, extra_special_tokens: List[str], vocab_size: int = 600):
    """Write ``vocab.json``, ``merges.txt`` and (under ``directory/hf``) ``tokenizer.json``.

    Returns:
        Tuple[Path, Path, Path, Dict[str, int], transformers.PreTrainedTokenizerBase]: the three
        files, the special tokens (``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>`` and then
        ``extra_special_tokens``, numbered after the vocabulary) and the transformers tokenizer.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    directory = Path(directory)
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(tiny_corpus() + _EXTRA_TEXT * 20, trainer=trainer)
    tok.model.save(str(directory))
    hf = Qwen2Tokenizer.from_pretrained(str(directory))  # reads vocab.json + merges.txt
    hf.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"] + extra_special_tokens})
    names = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + extra_special_tokens
    special: Dict[str, int] = dict(zip(names, hf.convert_tokens_to_ids(names)))
    assert sorted(special.values()) == list(range(len(tok.get_vocab()), len(tok.get_vocab()) + len(names)))
    hf_dir = directory / "hf"
    hf.save_pretrained(str(hf_dir))
    return directory / "vocab.json", directory / "merges.txt", hf_dir / "tokenizer.json", special, hf


def hf_chat_ids(hf, template: str, chat, **kwargs) -> List[int]:
    """``apply_chat_template`` ids (a plain list) for one conversation."""
    hf.chat_template = template
    out = hf.apply_chat_template(chat, tokenize=True, return_dict=False, **kwargs)
    return list(out["input_ids"] if isinstance(out, dict) else out)
