"""Tokenizers from GGUF metadata, and GGUF tokenizer metadata from our tokenizers.

A GGUF file carries its tokenizer in ``tokenizer.ggml.*`` keys: the model kind (``gpt2``: byte-level
BPE with ``merges``; ``llama``: a SentencePiece vocabulary with ``scores``), the token strings and
their types (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte: SentencePiece's
numbering), the pre-tokenizer name (``pre``), the special ids and ``tokenizer.chat_template``.

- ``gpt2`` with a ChatML template (``<|im_start|>``, as SmolLM2 and Qwen2) becomes a
  :class:`GGUFChatMLTokenizer` (the Qwen2 tokenizer's ChatML layout with the file's vocabulary,
  pre-tokenizer, special tokens and default system prompt).
- ``llama`` becomes a :class:`~torchtune.models.llama2.Llama2Tokenizer` on a SentencePiece model
  rebuilt from the pieces, scores and types.
"""

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from torchtune.data._prompt_templates import _get_prompt_template, _TemplateType
from torchtune.models.llama2 import Llama2Tokenizer
from torchtune.models.qwen2._tokenizer import QWEN2_PATTERN, Qwen2Tokenizer
from torchtune.modules.transforms.tokenizers._gpt2 import GPT2_PATTERN
from torchtune.utils._gguf import GGUFFile, _import_gguf

# llama.cpp's "smollm" (also starcoder, refact, command-r) pre-tokenizer: every digit is split off
# first, then GPT-2's regex runs on the text between digits. One regex does both: digits match only
# alone, and "whitespace not followed by a non-space" also stops before a digit (the piece ends there).
SMOLLM_PATTERN = r"""\p{N}|'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?[^\s\p{L}\p{N}]+|\s+(?![^\s\p{N}])|\s+"""
PRE_TOKENIZER_PATTERNS = {
    "default": GPT2_PATTERN, "gpt2": GPT2_PATTERN,
    "smollm": SMOLLM_PATTERN, "starcoder": SMOLLM_PATTERN, "refact": SMOLLM_PATTERN,
    "qwen2": QWEN2_PATTERN,
}
_CONTROL, _USER_DEFINED = 3, 4
_SYSTEM_IN_TEMPLATE = re.compile(r"<\|im_start\|>system\n(.*?)<\|im_end\|>", re.S)

# The ChatML template written into GGUF files whose tokenizer has no template of its own.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class GGUFChatMLTokenizer(Qwen2Tokenizer):
    """Byte-level BPE from a GGUF file with the ChatML conversation layout.

    Each message is ``<|im_start|>{role}\\n{content}<|im_end|>\\n``, as in
    :class:`~torchtune.models.qwen2.Qwen2Tokenizer`, whose masking, truncation and generation
    prompt this class keeps; the vocabulary, pre-tokenization regex, special tokens (the file's
    control and user-defined tokens) and special ids come from the file.

    Args:
        vocab_path (str): ``vocab.json`` written from the file's tokens.
        merges_path (str): ``merges.txt`` written from the file's merges.
        special_tokens (Dict[str, int]): special token -> id.
        pattern (str): pre-tokenization regex.
        eos_token (str): end of a message and of ``encode``.
        pad_token (Optional[str]): padding token.
        bos_token (Optional[str]): token put first, or None (``add_bos_token`` false).
        max_seq_len (Optional[int]): truncation length. Default None.
        prompt_template (Optional[PromptTemplate]): applied to messages first. Default None.
        default_system_prompt (Optional[str]): system message put first when there is none.
        chat_template (Optional[str]): the file's Jinja chat template, kept for reference.
        truncation_type (str): ``"right"`` or ``"left"``. Default ``"right"``.
    """

    def __init__(
        self,
        vocab_path: str,
        merges_path: str,
        special_tokens: Dict[str, int],
        pattern: str,
        eos_token: str,
        pad_token: Optional[str],
        bos_token: Optional[str] = None,
        max_seq_len: Optional[int] = None,
        prompt_template=None,
        default_system_prompt: Optional[str] = None,
        chat_template: Optional[str] = None,
        truncation_type: str = "right",
    ) -> None:
        # Qwen2Tokenizer reads these two class attributes when it builds the BPE.
        self._pattern = pattern
        self._normalization = None
        super().__init__(
            vocab_path, merges_path, special_tokens=special_tokens, max_seq_len=max_seq_len,
            prompt_template=prompt_template, bos_token=bos_token, eos_token=eos_token, pad_token=pad_token,
            bpe_cache_size=65536, default_system_prompt=default_system_prompt, truncation_type=truncation_type,
        )
        self.chat_template = chat_template


def _token(tokens: List[str], index: Optional[int]) -> Optional[str]:
    return None if index is None or not 0 <= int(index) < len(tokens) else tokens[int(index)]


def _gpt2_tokenizer(gguf_file: GGUFFile, max_seq_len, prompt_template, default_system_prompt, truncation_type):
    tokens: List[str] = gguf_file.require("tokenizer.ggml.tokens")
    types = gguf_file.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    merges = gguf_file.require("tokenizer.ggml.merges")
    pre = gguf_file.get("tokenizer.ggml.pre", "default")
    if pre not in PRE_TOKENIZER_PATTERNS:
        raise ValueError(f"{gguf_file.path}: tokenizer.ggml.pre {pre!r} is not supported yet; supported: "
                         f"{sorted(PRE_TOKENIZER_PATTERNS)}")
    template = gguf_file.get("tokenizer.chat_template")
    if template is None or "<|im_start|>" not in template:
        raise ValueError(f"{gguf_file.path}: only ChatML chat templates (<|im_start|>) are supported for gpt2-style "
                         "GGUF tokenizers so far")
    special = {t: i for i, (t, kind) in enumerate(zip(tokens, types)) if kind in (_CONTROL, _USER_DEFINED)}
    if default_system_prompt == "from_template":
        found = _SYSTEM_IN_TEMPLATE.search(template)
        default_system_prompt = found.group(1) if found else None
    add_bos = gguf_file.get("tokenizer.ggml.add_bos_token", False)
    eos = _token(tokens, gguf_file.get("tokenizer.ggml.eos_token_id")) or "<|im_end|>"
    with tempfile.TemporaryDirectory() as tmp:
        # GPT2BaseTokenizer reads vocab.json + merges.txt; the GGUF strings are already in
        # GPT-2's byte alphabet, as in those files.
        vocab_path, merges_path = os.path.join(tmp, "vocab.json"), os.path.join(tmp, "merges.txt")
        with open(vocab_path, "w", encoding="utf-8") as f:
            json.dump({t: i for i, t in enumerate(tokens)}, f, ensure_ascii=False)
        with open(merges_path, "w", encoding="utf-8") as f:
            f.write("\n".join(merges))
        return GGUFChatMLTokenizer(
            vocab_path, merges_path, special_tokens=special, pattern=PRE_TOKENIZER_PATTERNS[pre], eos_token=eos,
            pad_token=_token(tokens, gguf_file.get("tokenizer.ggml.padding_token_id")),
            bos_token=_token(tokens, gguf_file.get("tokenizer.ggml.bos_token_id")) if add_bos else None,
            max_seq_len=max_seq_len, prompt_template=_get_prompt_template(prompt_template),
            default_system_prompt=default_system_prompt, chat_template=template, truncation_type=truncation_type,
        )


def _sentencepiece_tokenizer(gguf_file: GGUFFile, max_seq_len, prompt_template, truncation_type):
    from sentencepiece import sentencepiece_model_pb2 as pb

    tokens: List[str] = gguf_file.require("tokenizer.ggml.tokens")
    scores = gguf_file.get("tokenizer.ggml.scores") or [0.0] * len(tokens)
    types = gguf_file.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    proto = pb.ModelProto()
    for token, score, kind in zip(tokens, scores, types):
        piece = proto.pieces.add()
        piece.piece, piece.score, piece.type = token, float(score), int(kind)
    spec = proto.trainer_spec
    spec.model_type = pb.TrainerSpec.BPE
    spec.byte_fallback = 6 in types
    spec.vocab_size = len(tokens)
    for field, key in (("unk_id", "unknown"), ("bos_id", "bos"), ("eos_id", "eos"), ("pad_id", "padding")):
        setattr(spec, field, int(gguf_file.get(f"tokenizer.ggml.{key}_token_id", -1)))
    norm = proto.normalizer_spec
    norm.name = "identity"
    norm.add_dummy_prefix = bool(gguf_file.get("tokenizer.ggml.add_space_prefix", True))
    norm.remove_extra_whitespaces = False
    norm.escape_whitespaces = True
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "tokenizer.model")
        Path(path).write_bytes(proto.SerializeToString())
        kwargs = {} if prompt_template is None else {"prompt_template": _get_prompt_template(prompt_template)}
        return Llama2Tokenizer(path, max_seq_len=max_seq_len, truncation_type=truncation_type, **kwargs)


def gguf_tokenizer(
    path: Union[str, Path],
    max_seq_len: Optional[int] = None,
    prompt_template: Optional[_TemplateType] = None,
    default_system_prompt: Optional[str] = "from_template",
    truncation_type: str = "right",
):
    """The tokenizer a GGUF file describes, as one of our model tokenizers.

    Args:
        path (Union[str, Path]): the ``.gguf`` file (only its header is read).
        max_seq_len (Optional[int]): truncate tokenized conversations to this length. Default None.
        prompt_template (Optional[_TemplateType]): for ``llama`` (SentencePiece) files, the prompt
            template (None: Llama 2's ``[INST]`` format); for ChatML files, applied before ChatML.
            Default None.
        default_system_prompt (Optional[str]): ChatML files only: system message put first when a
            conversation has none. Default ``"from_template"``: the one the file's chat template
            writes (SmolLM2: "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
            None for none.
        truncation_type (str): ``"right"`` or ``"left"``. Default ``"right"``.

    Returns:
        GGUFChatMLTokenizer or Llama2Tokenizer: the tokenizer.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the file, for a tokenizer kind, pre-tokenizer or chat template not
            supported yet, or a missing key.
    """
    gguf_file = GGUFFile(path)
    kind = gguf_file.require("tokenizer.ggml.model")
    if kind == "gpt2":
        return _gpt2_tokenizer(gguf_file, max_seq_len, prompt_template, default_system_prompt, truncation_type)
    if kind == "llama":
        return _sentencepiece_tokenizer(gguf_file, max_seq_len, prompt_template, truncation_type)
    raise ValueError(f"{gguf_file.path}: tokenizer.ggml.model {kind!r} is not supported yet (gpt2, llama)")


def gguf_tokenizer_metadata(tokenizer: Any, chat_template: Optional[str] = None) -> Dict[str, tuple]:
    """``tokenizer.*`` GGUF metadata describing one of our tokenizers, for :func:`save_gguf`.

    Args:
        tokenizer: a :class:`~torchtune.models.qwen2.Qwen2Tokenizer` (or subclass, byte-level BPE
            with ChatML) or a SentencePiece-backed tokenizer (``Llama2Tokenizer``).
        chat_template (Optional[str]): Jinja chat template to record. Default None (ChatML's for a
            BPE tokenizer, none for SentencePiece).

    Returns:
        Dict[str, tuple]: ``key -> (value, GGUFValueType, element type or None)``.

    Raises:
        ValueError: for a tokenizer of another kind.
    """
    gguf = _import_gguf()
    V = gguf.GGUFValueType
    out: Dict[str, tuple] = {}
    base = getattr(tokenizer, "base", None)
    if base is not None and hasattr(base, "bpe_ranks"):
        size = base.vocab_size
        tokens = [""] * size
        types = [1] * size
        for text, i in base.encoder.items():
            tokens[i] = text
        for text, i in base.special_tokens.items():
            tokens[i], types[i] = text, _CONTROL
        merges = [f"{a} {b}" for (a, b), _ in sorted(base.bpe_ranks.items(), key=lambda kv: kv[1])]
        pre = next((name for name, p in PRE_TOKENIZER_PATTERNS.items() if p == base.pattern.pattern), None)
        if pre is None:
            raise ValueError("the tokenizer's pre-tokenization regex has no llama.cpp pre-tokenizer name")
        out.update({
            "tokenizer.ggml.model": ("gpt2", V.STRING, None), "tokenizer.ggml.pre": (pre, V.STRING, None),
            "tokenizer.ggml.tokens": (tokens, V.ARRAY, V.STRING),
            "tokenizer.ggml.token_type": (types, V.ARRAY, V.INT32),
            "tokenizer.ggml.merges": (merges, V.ARRAY, V.STRING),
            "tokenizer.ggml.add_bos_token": (tokenizer.bos_id is not None, V.BOOL, None),
            "tokenizer.chat_template": (chat_template or CHATML_TEMPLATE, V.STRING, None),
        })
        ids = {"bos": tokenizer.bos_id, "eos": tokenizer.eos_id, "padding": tokenizer.pad_id}
    elif hasattr(tokenizer, "_spm_model"):
        sp = tokenizer._spm_model.spm_model
        n = sp.vocab_size()
        kinds = [_CONTROL if sp.is_control(i) else 2 if sp.is_unknown(i) else 6 if sp.is_byte(i)
                 else 5 if sp.is_unused(i) else 1 for i in range(n)]
        from sentencepiece import sentencepiece_model_pb2 as pb

        proto = pb.ModelProto()
        proto.ParseFromString(sp.serialized_model_proto())
        out.update({
            "tokenizer.ggml.model": ("llama", V.STRING, None),
            "tokenizer.ggml.tokens": ([sp.id_to_piece(i) for i in range(n)], V.ARRAY, V.STRING),
            "tokenizer.ggml.scores": ([float(sp.get_score(i)) for i in range(n)], V.ARRAY, V.FLOAT32),
            "tokenizer.ggml.token_type": (kinds, V.ARRAY, V.INT32),
            "tokenizer.ggml.add_bos_token": (True, V.BOOL, None),
            "tokenizer.ggml.add_space_prefix": (bool(proto.normalizer_spec.add_dummy_prefix), V.BOOL, None),
        })
        if chat_template is not None:
            out["tokenizer.chat_template"] = (chat_template, V.STRING, None)
        ids = {"bos": sp.bos_id(), "eos": sp.eos_id(), "unknown": sp.unk_id(), "padding": sp.pad_id()}
    else:
        raise ValueError(f"cannot describe a {type(tokenizer).__name__} as GGUF tokenizer metadata")
    for name, value in ids.items():
        if value is not None and value >= 0:
            out[f"tokenizer.ggml.{name}_token_id"] = (int(value), V.UINT32, None)
    return out
