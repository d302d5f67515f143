"""Our public surface against torchtune v0.6.1's, name by name.

``tests/assets/compat/torchtune_v0_6_1_api.json`` records, for every public torchtune v0.6.1 package,
each name in its ``__all__``: kind, ``inspect.signature`` text (classes: ``__init__``, public methods,
bases, enum members) or value. For each package we have, every name must be present and exported,
of the same kind, with the same parameters (names, order of positional parameters, kinds, defaults;
annotations are not compared, as their spelling differs between typing styles), methods, bases and
enum members.

Differences are allowed only where listed below, each with its reason:

- ``ADDITIONS``: our extra parameters, placed after upstream's and with defaults (keyword-only or
  trailing), and extra enum members. Key: ``"<qualified name>(<param>)"``.
- ``NOT_YET_PRESENT``: packages and names later issues bring. Only their absence is excused: once a
  package or name exists, it is compared like the rest and its entry must be removed.
- ``KNOWN_DIFFERENCES``: other documented deviations, keyed by qualified name.

Entries that no longer excuse anything fail the test, so the lists stay exact.
"""
import ast
import enum
import functools
import importlib
import inspect
import json
import re
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import pytest

MANIFEST = json.loads(
    (Path(__file__).resolve().parents[1] / "assets" / "compat" / "torchtune_v0_6_1_api.json").read_text()
)
PACKAGES = [name for name in MANIFEST if not name.startswith("_")]

# ---------------------------------------------------------------------------------------------
# Deliberate additions: "<qualified name>(<param>)" -> reason.
_CKPT_STEP = "mid-epoch checkpoints: the step folder to write (step_{N})"
_CKPT_KEEP = "mid-epoch checkpoints: how many step folders to keep"
_TOP_P = "nucleus (top-p) sampling"
_INFERENCE = "generation prompts: end with the assistant prefix"
_TRUNCATION = "left or right truncation of long conversations"
_ROPE_BASE = "configurable RoPE base, as in llama2() (Code Llama uses 1e6)"
_ROPE_SCALING = "Llama 3.1 RoPE scaling settings, configurable instead of hard-coded"
_KD_SUM = "summed (not normalised) distillation loss for token-normalised accumulation, as the unchunked losses offer"
ADDITIONS: Dict[str, str] = {
    "torchtune.models.phi3.Phi3MiniTokenizer.__init__(strip_after_special_tokens)":
        "keep the format's newlines as tokens instead of Phi-3's rstrip of its added tokens",
    "torchtune.models.qwen2.Qwen2Tokenizer.__init__(truncation_type)": _TRUNCATION,
    "torchtune.models.qwen2.Qwen2Tokenizer.__init__(default_system_prompt)":
        "the system prompt Qwen2.5's chat template adds when a conversation has none",
    "torchtune.training.ModelType(QWEN3)": "Qwen3 checkpoints (torchtune's main branch adds QWEN3)",
    "torchtune.training.checkpointing.ModelType(QWEN3)": "Qwen3 checkpoints (torchtune's main branch adds QWEN3)",
    "torchtune.data.padded_collate_sft(pad_to_multiple_of)": "pad lengths to a multiple (tensor-core / compile friendly)",
    "torchtune.data.truncate(truncation_type)": "left truncation keeps the end of long conversations",
    "torchtune.datasets.cnn_dailymail_articles_dataset(packed)": "sample packing, as for wikitext_dataset",
    "torchtune.datasets.hh_rlhf_helpful_dataset(packed)": "packing check: raises clearly (preference data cannot be packed)",
    "torchtune.datasets.preference_dataset(packed)": "packing check: raises clearly (preference data cannot be packed)",
    "torchtune.generation.generate(top_p)": _TOP_P,
    "torchtune.generation.generate_next_token(top_p)": _TOP_P,
    "torchtune.generation.sample(top_p)": _TOP_P,
    "torchtune.models.llama2.Llama2ChatTemplate.__call__(inference)": _INFERENCE,
    "torchtune.models.llama2.Llama2Tokenizer.__init__(truncation_type)": _TRUNCATION,
    "torchtune.models.llama2.llama2_tokenizer(truncation_type)": _TRUNCATION,
    "torchtune.models.llama2.llama2_classifier(rope_base)": _ROPE_BASE,
    "torchtune.models.llama2.lora_llama2(rope_base)": _ROPE_BASE,
    "torchtune.models.llama2.lora_llama2_classifier(rope_base)": _ROPE_BASE,
    "torchtune.models.mistral.MistralChatTemplate.__call__(inference)": _INFERENCE,
    "torchtune.models.mistral.MistralTokenizer.__init__(truncation_type)": _TRUNCATION,
    "torchtune.models.mistral.mistral_tokenizer(truncation_type)": _TRUNCATION,
    "torchtune.models.llama3.Llama3Tokenizer.__init__(truncation_type)": _TRUNCATION,
    "torchtune.models.llama3.llama3_tokenizer(truncation_type)": _TRUNCATION,
    "torchtune.models.llama3_1.llama3_1(low_freq_factor)": _ROPE_SCALING,
    "torchtune.models.llama3_1.llama3_1(high_freq_factor)": _ROPE_SCALING,
    "torchtune.models.llama3_1.llama3_1(old_context_len)": _ROPE_SCALING,
    "torchtune.models.llama3_1.lora_llama3_1(low_freq_factor)": _ROPE_SCALING,
    "torchtune.models.llama3_1.lora_llama3_1(high_freq_factor)": _ROPE_SCALING,
    "torchtune.models.llama3_1.lora_llama3_1(old_context_len)": _ROPE_SCALING,
    "torchtune.models.llama3_2.llama3_2(low_freq_factor)": _ROPE_SCALING,
    "torchtune.models.llama3_2.llama3_2(high_freq_factor)": _ROPE_SCALING,
    "torchtune.models.llama3_2.llama3_2(old_context_len)": _ROPE_SCALING,
    "torchtune.models.llama3_2.lora_llama3_2(low_freq_factor)": _ROPE_SCALING,
    "torchtune.models.llama3_2.lora_llama3_2(high_freq_factor)": _ROPE_SCALING,
    "torchtune.models.llama3_2.lora_llama3_2(old_context_len)": _ROPE_SCALING,
    "torchtune.models.mistral.lora_mistral(sliding_window)": "Mistral's sliding-window attention",
    "torchtune.models.mistral.lora_mistral_classifier(sliding_window)": "Mistral's sliding-window attention",
    "torchtune.models.mistral.mistral(sliding_window)": "Mistral's sliding-window attention",
    "torchtune.models.mistral.mistral_classifier(sliding_window)": "Mistral's sliding-window attention",
    "torchtune.modules.MultiHeadAttention.__init__(sliding_window)": "sliding-window attention (Mistral, Gemma 2)",
    "torchtune.modules.MultiHeadAttention.__init__(attn_bias)": "block library: additive position bias (ALiBi, T5)",
    "torchtune.modules.MultiHeadAttention.__init__(backend)": "block library: attention backend (flex, chunked, math)",
    "torchtune.modules.TransformerDecoder.__init__(post_embedding)":
        "block library: absolute positions / post-embedding norm",
    "torchtune.modules.TransformerDecoder.__init__(memory_tokens)": "block library: learned memory tokens",
    "torchtune.modules.MultiHeadAttention.__init__(scale)": "Gemma 2 / 3 query_pre_attn_scalar",
    "torchtune.modules.MultiHeadAttention.__init__(logit_softcapping)": "Gemma 2 attention-score soft-capping",
    "torchtune.modules.TransformerDecoder.__init__(output_softcapping)": "Gemma 2 final logit soft-capping",
    "torchtune.training.ModelType(GEMMA3)": "Gemma 3 text-decoder checkpoints",
    "torchtune.training.checkpointing.ModelType(GEMMA3)": "Gemma 3 text-decoder checkpoints",
    "torchtune.training.ModelType(HF_DECODER)": "any decoder hf_decoder builds from its config.json (commit 40d1161)",
    "torchtune.training.checkpointing.ModelType(HF_DECODER)":
        "any decoder hf_decoder builds from its config.json (commit 40d1161)",
    "torchtune.modules.loss.CEWithChunkedOutputLoss.__init__(reduction)": "sum reduction for token-normalised accumulation",
    "torchtune.modules.loss.CEWithChunkedOutputLoss.forward(reduction)": "sum reduction for token-normalised accumulation",
    "torchtune.modules.loss.ForwardKLWithChunkedOutputLoss.forward(normalize)": _KD_SUM,
    "torchtune.modules.loss.ReverseKLWithChunkedOutputLoss.forward(normalize)": _KD_SUM,
    "torchtune.modules.loss.SymmetricKLWithChunkedOutputLoss.forward(normalize)": _KD_SUM,
    "torchtune.modules.peft.QATLoRALinear.__init__(use_bias)": "a frozen base bias, as LoRALinear takes (Qwen2's q/k/v)",
    "torchtune.modules.peft.validate_missing_and_unexpected_for_lora(state_dict_keys)":
        "check without the LoRA config: adapter keys restricted to the model's own keys",
    "torchtune.modules.transforms.tokenizers.GPT2BaseTokenizer.__init__(pattern)":
        "one byte-level BPE for the families' pre-tokenization regexes (Qwen, Phi-4)",
    "torchtune.modules.transforms.tokenizers.GPT2BaseTokenizer.__init__(special_tokens)":
        "special tokens matched in text and decoded, as Hugging Face added tokens",
    "torchtune.modules.transforms.tokenizers.GPT2BaseTokenizer.__init__(unicode_normalization)":
        "Qwen's tokenizers NFC-normalize text",
    "torchtune.modules.transforms.tokenizers.GPT2BaseTokenizer.__init__(bpe_cache_size)": "bounded BPE cache",
    "torchtune.modules.transforms.tokenizers.GPT2BaseTokenizer.encode(trim_leading_whitespace)":
        "uniform encode signature across base tokenizers",
    "torchtune.modules.transforms.tokenizers.GPT2BaseTokenizer.decode(skip_special_tokens)":
        "keep special tokens in decoded text when asked",
    "torchtune.models.qwen2.Qwen2Tokenizer.__init__(default_system_prompt)":
        "the system message the family's chat template adds when a conversation has none",
    "torchtune.models.qwen2.Qwen2Tokenizer.__init__(truncation_type)": _TRUNCATION,
    "torchtune.modules.transforms.tokenizers.HuggingFaceBaseTokenizer.decode(skip_special_tokens)":
        "keep special tokens in decoded text when asked",
    "torchtune.modules.transforms.tokenizers.HuggingFaceBaseTokenizer.encode(trim_leading_whitespace)":
        "encode a continuation without the dummy-prefix space",
    "torchtune.modules.transforms.tokenizers.TikTokenBaseTokenizer.decode(skip_special_tokens)":
        "keep special tokens in decoded text when asked",
    "torchtune.modules.transforms.tokenizers.TikTokenBaseTokenizer.encode(trim_leading_whitespace)":
        "uniform encode signature across base tokenizers",
    "torchtune.modules.transforms.tokenizers.tokenize_messages_no_special_tokens(add_end_tokens)":
        "generation prompts: no EOS after the last message",
    "torchtune.training.FullModelHFCheckpointer.save_checkpoint(step)": _CKPT_STEP,
    "torchtune.training.FullModelHFCheckpointer.save_checkpoint(keep_last_n_checkpoints)": _CKPT_KEEP,
    "torchtune.training.FullModelMetaCheckpointer.save_checkpoint(step)": _CKPT_STEP,
    "torchtune.training.FullModelMetaCheckpointer.save_checkpoint(keep_last_n_checkpoints)": _CKPT_KEEP,
    "torchtune.training.FullModelTorchTuneCheckpointer.__init__(safe_serialization)":
        "write model.safetensors (default) or model.pt",
    "torchtune.training.FullModelTorchTuneCheckpointer.save_checkpoint(step)": _CKPT_STEP,
    "torchtune.training.FullModelTorchTuneCheckpointer.save_checkpoint(keep_last_n_checkpoints)": _CKPT_KEEP,
    "torchtune.training.OffloadActivations.__init__(keep_on_device)": "parameters and buffers are never offloaded",
    "torchtune.training.get_dtype(allow_fp16)": "fp16 is refused unless asked for (no loss scaling in the recipes)",
    "torchtune.training.load_from_full_model_state_dict(release_sd)": "free the full state dict while sharding",
    "torchtune.training.shard_model(mp_policy)": "FSDP2 mixed-precision policy",
    "torchtune.training.checkpointing.FullModelHFCheckpointer.save_checkpoint(step)": _CKPT_STEP,
    "torchtune.training.checkpointing.FullModelHFCheckpointer.save_checkpoint(keep_last_n_checkpoints)": _CKPT_KEEP,
    "torchtune.training.checkpointing.FullModelMetaCheckpointer.save_checkpoint(step)": _CKPT_STEP,
    "torchtune.training.checkpointing.FullModelMetaCheckpointer.save_checkpoint(keep_last_n_checkpoints)": _CKPT_KEEP,
    "torchtune.training.checkpointing.FullModelTorchTuneCheckpointer.__init__(safe_serialization)":
        "write model.safetensors (default) or model.pt",
    "torchtune.training.checkpointing.FullModelTorchTuneCheckpointer.save_checkpoint(step)": _CKPT_STEP,
    "torchtune.training.checkpointing.FullModelTorchTuneCheckpointer.save_checkpoint(keep_last_n_checkpoints)":
        _CKPT_KEEP,
}

# Packages (key: package) and names (key: package.name) that later issues bring.
_VISION = "multimodal (vision) issue; upstream's package imports torchvision"
_MULTIMODAL = "multimodal (vision) issue"
_KD = "knowledge-distillation issue"
NOT_YET_PRESENT: Dict[str, str] = {
    # Whole packages.
    "torchtune.datasets.multimodal": _MULTIMODAL,
    "torchtune.models.clip": _VISION,
    "torchtune.models.flux": "Flux autoencoder issue",
    "torchtune.models.llama3_2_vision": _VISION,
    "torchtune.models.t5": "T5 encoder issue",
    "torchtune.modules.model_fusion": _MULTIMODAL,
    # Names in packages we have.
    "torchtune.data.format_content_with_images": _MULTIMODAL,
    "torchtune.data.load_image": _MULTIMODAL,
    "torchtune.data.padded_collate_tiled_images_and_mask": _MULTIMODAL,
    "torchtune.datasets.multimodal": _MULTIMODAL,
    "torchtune.modules.LayerDropout": "layer-skip (early exit) issue",
    "torchtune.modules.prepare_layer_dropout": "layer-skip (early exit) issue",
    "torchtune.modules.VectorQuantizedEmbeddings": "Flux autoencoder issue",
    "torchtune.modules.VisionRotaryPositionalEmbeddings": _MULTIMODAL,
    "torchtune.modules.VisionTransformer": _MULTIMODAL,
    "torchtune.modules.transforms.VisionCrossAttentionMask": _MULTIMODAL,
    "torchtune.training.DistributedCheckpointer": "distributed (DCP) checkpointing issue",
    "torchtune.training.checkpointing.DistributedCheckpointer": "distributed (DCP) checkpointing issue",
    "torchtune.training.get_unmasked_sequence_lengths": "RLHF (DPO/PPO) issue",
    "torchtune.training.prepare_mha_for_tp": "tensor-parallel issue",
}

# Documented deviations other than additions: qualified name -> reason.
_PLAIN_DEF = "a plain def with upstream's signature instead of a functools.partial (STYLE: explicit defs)"
_IMAGES = "image_dir/image_tag arrive with the multimodal datasets issue"
KNOWN_DIFFERENCES: Dict[str, str] = {
    "torchtune.data.ChatMLTemplate.__init__": "upstream's (*args, **kwargs) is typing.Protocol's placeholder; takes none",
    "torchtune.data.InputOutputToMessages.__init__": _IMAGES,
    "torchtune.data.ShareGPTToMessages.__init__": _IMAGES,
    "torchtune.data.padded_collate": "pad_direction, keys_to_pad and padding_idx have defaults (upstream requires them)",
    "torchtune.modules.TransformerSelfAttentionLayer.setup_caches":
        "encoder_max_seq_len is optional (a self-attention layer has no encoder)",
    "torchtune.training.apply_selective_activation_checkpointing": "ac_option is optional ('full' mode needs none)",
    "torchtune.models.llama2.qlora_llama2_7b": _PLAIN_DEF,
    "torchtune.models.llama2.qlora_llama2_13b": _PLAIN_DEF,
    "torchtune.models.llama2.qlora_llama2_70b": _PLAIN_DEF,
    "torchtune.models.llama2.qlora_llama2_reward_7b": _PLAIN_DEF,
    "torchtune.models.code_llama2.qlora_code_llama2_7b": _PLAIN_DEF,
    "torchtune.models.code_llama2.qlora_code_llama2_13b": _PLAIN_DEF,
    "torchtune.models.code_llama2.qlora_code_llama2_70b": _PLAIN_DEF,
    "torchtune.models.llama3.qlora_llama3_8b": _PLAIN_DEF,
    "torchtune.models.llama3.qlora_llama3_70b": _PLAIN_DEF,
    "torchtune.models.llama3_1.qlora_llama3_1_8b": _PLAIN_DEF,
    "torchtune.models.llama3_1.qlora_llama3_1_70b": _PLAIN_DEF,
    "torchtune.models.llama3_1.qlora_llama3_1_405b": _PLAIN_DEF,
    "torchtune.models.llama3_2.qlora_llama3_2_1b": _PLAIN_DEF,
    "torchtune.models.llama3_2.qlora_llama3_2_3b": _PLAIN_DEF,
    "torchtune.models.llama3_3.qlora_llama3_3_70b": _PLAIN_DEF,
    "torchtune.models.mistral.qlora_mistral_7b": _PLAIN_DEF,
    "torchtune.models.mistral.qlora_mistral_reward_7b": _PLAIN_DEF,
    "torchtune.models.phi3.qlora_phi3_mini": _PLAIN_DEF,
    "torchtune.models.phi4.qlora_phi4_14b": _PLAIN_DEF,
    "torchtune.models.gemma.qlora_gemma_2b": _PLAIN_DEF,
    "torchtune.models.gemma.qlora_gemma_7b": _PLAIN_DEF,
    "torchtune.models.gemma2.qlora_gemma2_2b": _PLAIN_DEF,
    "torchtune.models.gemma2.qlora_gemma2_9b": _PLAIN_DEF,
    "torchtune.models.gemma2.qlora_gemma2_27b": _PLAIN_DEF,
}
# ---------------------------------------------------------------------------------------------


class Param(NamedTuple):
    name: str
    kind: str
    default: Optional[str]  # source text of the default, None when required


_POSITIONAL = ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD")
_VARIADIC = ("VAR_POSITIONAL", "VAR_KEYWORD")
# Defaults that are objects print as "<module.Class object at 0x...>" (or "<function f at 0x...>").
# Reprs start with a name, so string defaults such as '<|im_end|>' are left alone.
_OBJECT_REPR = re.compile(r"<[A-Za-z_][^<>]*>")


def parse_signature(text: str) -> List[Param]:
    """Parameters of an ``inspect.signature`` text, with defaults normalised through ``ast``."""
    cleaned = _OBJECT_REPR.sub(lambda m: repr(re.sub(r" at 0x[0-9a-fA-F]+", "", m.group(0))), text)
    # Annotations may name objects ast cannot read back; only names, kinds and defaults are kept.
    try:
        args = ast.parse(f"def f{cleaned}: pass").body[0].args
    except SyntaxError as e:
        raise ValueError(f"cannot parse signature {text!r}") from e
    positional = args.posonlyargs + args.args
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    out = []
    for i, (arg, default) in enumerate(zip(positional, defaults)):
        kind = "POSITIONAL_ONLY" if i < len(args.posonlyargs) else "POSITIONAL_OR_KEYWORD"
        out.append(Param(arg.arg, kind, None if default is None else ast.unparse(default)))
    if args.vararg:
        out.append(Param(args.vararg.arg, "VAR_POSITIONAL", None))
    for arg, default in zip(args.kwonlyargs, args.kw_defaults):
        out.append(Param(arg.arg, "KEYWORD_ONLY", None if default is None else ast.unparse(default)))
    if args.kwarg:
        out.append(Param(args.kwarg.arg, "VAR_KEYWORD", None))
    return out


_LITERALS = (str, bytes, int, float, complex, bool, type(None), tuple, list, dict, set, frozenset)


def _default_source(value: Any) -> str:
    """A default as ``parse_signature`` renders it from ``inspect.signature`` text.

    Literals and torch objects (``torch.bfloat16``) keep their repr; other objects, whatever their
    ``__repr__``, become ``'<module.Class object>'``, which is how upstream's defaults were recorded.
    """
    text = repr(value)
    if text.startswith("<"):
        return ast.unparse(ast.parse(repr(re.sub(r" at 0x[0-9a-fA-F]+", "", text)), mode="eval").body)
    if isinstance(value, _LITERALS) or type(value).__module__.split(".")[0] == "torch":
        try:
            return ast.unparse(ast.parse(text, mode="eval").body)
        except SyntaxError:
            pass
    return repr(f"<{type(value).__module__}.{type(value).__qualname__} object>")


def our_signature(obj: Any) -> List[Param]:
    """Parameters of one of our callables, in ``parse_signature``'s form."""
    return [
        Param(p.name, p.kind.name, None if p.default is inspect.Parameter.empty else _default_source(p.default))
        for p in inspect.signature(obj).parameters.values()
    ]


def compare_params(qualname: str, upstream: List[Param], ours: List[Param]) -> Tuple[List[str], List[str]]:
    """Differences between two parameter lists, and the additions they use.

    Upstream's positional parameters must be the first of ours, in order, with the same names and
    defaults; keyword-only ones must exist (in any order) with the same defaults; ``*args`` and
    ``**kwargs`` must exist where upstream has them (their names are not part of a call). Each of
    our other parameters is an addition: it needs a default and must follow upstream's positional
    parameters, and it must be listed in ``ADDITIONS``.

    Returns:
        Tuple[List[str], List[str]]: the differences, and the ``ADDITIONS`` keys used.
    """
    problems, used = [], []
    up_pos = [p for p in upstream if p.kind in _POSITIONAL]
    our_pos = [p for p in ours if p.kind in _POSITIONAL]
    for i, p in enumerate(up_pos):
        if i >= len(our_pos):
            problems.append(f"{qualname}: missing positional parameter {p.name!r} (position {i})")
            continue
        q = our_pos[i]
        if q.name != p.name:
            problems.append(f"{qualname}: positional parameter {i} is {q.name!r}, upstream {p.name!r}")
        elif q.kind != p.kind:
            problems.append(f"{qualname}: {p.name!r} is {q.kind}, upstream {p.kind}")
        elif q.default != p.default:
            problems.append(
                f"{qualname}: {p.name!r} defaults to {_default_text(q.default)}, upstream {_default_text(p.default)}"
            )
    up_kw = {p.name: p for p in upstream if p.kind == "KEYWORD_ONLY"}
    our_kw = {p.name: p for p in ours if p.kind == "KEYWORD_ONLY"}
    for name, p in up_kw.items():
        if name not in our_kw:
            where = "positional" if name in {q.name for q in our_pos} else "missing"
            problems.append(f"{qualname}: keyword-only parameter {name!r} is {where} here")
        elif our_kw[name].default != p.default:
            problems.append(
                f"{qualname}: {name!r} defaults to {_default_text(our_kw[name].default)}, "
                f"upstream {_default_text(p.default)}"
            )
    for kind in _VARIADIC:
        up_has, our_has = any(p.kind == kind for p in upstream), any(p.kind == kind for p in ours)
        if up_has and not our_has:
            problems.append(f"{qualname}: missing {'*args' if kind == 'VAR_POSITIONAL' else '**kwargs'}")
    up_names = {p.name for p in upstream}
    extras = [q for q in our_pos[len(up_pos):] if q.name not in up_names]
    extras += [q for name, q in our_kw.items() if name not in up_names]
    extras += [q for q in ours if q.kind in _VARIADIC and not any(p.kind == q.kind for p in upstream)]
    for q in extras:
        key = f"{qualname}({q.name})"
        if q.kind not in _VARIADIC and q.default is None:
            problems.append(f"{qualname}: extra parameter {q.name!r} has no default")
        elif key not in ADDITIONS:
            problems.append(f"{qualname}: extra parameter {q.name!r} is not listed in ADDITIONS ({key!r})")
        else:
            used.append(key)
    return problems, used


def _is_our_protocol(dotted: str) -> bool:
    """Whether upstream's base class ``dotted`` is, here too, a ``typing.Protocol``."""
    module_name, _, name = dotted.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name, None)
    except ImportError:
        return False
    return bool(getattr(cls, "_is_protocol", False))


def _default_text(default: Optional[str]) -> str:
    return "nothing (required)" if default is None else default


def _method_signature(cls: type, name: str) -> List[Param]:
    return our_signature(getattr(cls, name))


def compare_entry(qualname: str, entry: Dict[str, Any], obj: Any) -> Tuple[List[str], List[str]]:
    """Differences of one exported object from its manifest entry (and the additions used)."""
    kind = entry["kind"]
    problems: List[str] = []
    used: List[str] = []
    if kind == "module":
        if not inspect.ismodule(obj):
            problems.append(f"{qualname}: is {type(obj).__name__}, upstream a module")
        return problems, used
    if kind == "function":
        if inspect.isclass(obj) or not callable(obj):
            return [f"{qualname}: is {type(obj).__name__}, upstream a function"], used
        if entry["is_partial"] != isinstance(obj, functools.partial):
            problems.append(f"{qualname}: is_partial is {isinstance(obj, functools.partial)}, upstream {entry['is_partial']}")
        p, u = compare_params(qualname, parse_signature(entry["signature"]), our_signature(obj))
        return problems + p, used + u
    if kind == "class":
        if not inspect.isclass(obj):
            return [f"{qualname}: is {type(obj).__name__}, upstream a class"], used
        ours_mro = {base.__name__ for base in obj.__mro__}
        for base in entry["bases"]:
            short = base.rsplit(".", 1)[-1]
            # Private bases are implementation details; protocols are satisfied structurally.
            if short in ("object", "Protocol", "Generic") or short.startswith("_") or _is_our_protocol(base):
                continue
            if short not in ours_mro:
                problems.append(f"{qualname}: does not derive from {short} (upstream base {base})")
        if "members" in entry:
            if not issubclass(obj, enum.Enum):
                return problems + [f"{qualname}: is not an Enum"], used
            ours_members = list(obj.__members__)
            for member in entry["members"]:
                if member not in ours_members:
                    problems.append(f"{qualname}: enum member {member} is missing")
            for member in ours_members:
                if member not in entry["members"]:
                    key = f"{qualname}({member})"
                    (used.append(key) if key in ADDITIONS else problems.append(
                        f"{qualname}: extra enum member {member} is not listed in ADDITIONS ({key!r})"))
            return problems, used
        p, u = compare_params(f"{qualname}.__init__", parse_signature(entry["init"]), our_signature(obj))
        problems, used = problems + p, used + u
        for method, text in entry["methods"].items():
            if method == "__init__":
                continue
            static = inspect.getattr_static(obj, method, None)
            if static is None:
                problems.append(f"{qualname}.{method}: missing")
                continue
            if isinstance(static, property) or not callable(getattr(obj, method)):
                problems.append(f"{qualname}.{method}: is not a method")
                continue
            p, u = compare_params(f"{qualname}.{method}", parse_signature(text), _method_signature(obj, method))
            problems, used = problems + p, used + u
        return problems, used
    # Constants: str, int, dict, set.
    if kind == "set":
        same = isinstance(obj, (set, frozenset)) and sorted(map(repr, obj)) == sorted(
            _OBJECT_REPR.findall(entry["value"]) or [repr(v) for v in ast.literal_eval(entry["value"])]
        )
    else:
        same = repr(obj) == entry["value"]
    if not same:
        problems.append(f"{qualname}: value {obj!r}, upstream {entry['value']}")
    return problems, used


def _import(package: str):
    try:
        return importlib.import_module(package), None
    except ModuleNotFoundError as e:
        if e.name is not None and (package == e.name or package.startswith(e.name + ".")):
            return None, e
        raise


def compare_package(package: str) -> Tuple[List[str], List[str]]:
    """All differences of one package, and every list entry they use (for the staleness check)."""
    names = MANIFEST[package]
    module, error = _import(package)
    if module is None:
        if package in NOT_YET_PRESENT:
            return [], [package]
        return [f"{package}: cannot be imported ({error}); list it in NOT_YET_PRESENT if a later issue brings it"], []
    problems, used = [], []
    if package in NOT_YET_PRESENT:
        problems.append(f"{package}: now exists; remove it from NOT_YET_PRESENT (its names are compared)")
    if "__import_error__" in names:
        return problems + [f"{package}: the manifest has no names (upstream failed to import it)"], used
    exported = set(getattr(module, "__all__", ()))
    for name, entry in names.items():
        qualname = f"{package}.{name}"
        if not hasattr(module, name):
            if qualname in NOT_YET_PRESENT:
                used.append(qualname)
            else:
                problems.append(f"{qualname}: missing")
            continue
        if qualname in NOT_YET_PRESENT:
            problems.append(f"{qualname}: now exists; remove it from NOT_YET_PRESENT")
        if name not in exported:
            problems.append(f"{qualname}: not in {package}.__all__")
        diffs, additions = compare_entry(qualname, entry, getattr(module, name))
        used += additions
        for diff in diffs:
            key = diff.split(":", 1)[0]
            owner = key.split("(")[0]
            known = next((k for k in (key, owner) if k in KNOWN_DIFFERENCES), None)
            if known is None:
                problems.append(diff)
            else:
                used.append(known)
    return problems, used


@pytest.mark.parametrize("package", PACKAGES)
def test_package_matches_torchtune_0_6_1(package):
    problems, _ = compare_package(package)
    assert not problems, f"{len(problems)} difference(s) from torchtune v0.6.1:\n" + "\n".join(problems)


def test_every_listed_exception_is_still_needed():
    used = set()
    for package in PACKAGES:
        used.update(compare_package(package)[1])
    for name, listing in (("ADDITIONS", ADDITIONS), ("NOT_YET_PRESENT", NOT_YET_PRESENT),
                          ("KNOWN_DIFFERENCES", KNOWN_DIFFERENCES)):
        stale = sorted(set(listing) - used)
        assert not stale, f"{name} entries that excuse nothing any more (remove them): {stale}"


def test_the_comparison_catches_signature_changes():
    upstream = parse_signature("(model, scaler: float, *, eps: float = 1e-05, **kwargs)")

    def diffs(text):
        return compare_params("f", upstream, parse_signature(text))[0]

    assert diffs("(model, scaler, *, eps=1e-5, **kw)") == []
    assert diffs("(params, scaler, *, eps=1e-05, **kwargs)")  # renamed
    assert diffs("(scaler, model, *, eps=1e-05, **kwargs)")  # reordered
    assert diffs("(model, scaler, *, eps=1e-06, **kwargs)")  # other default
    assert diffs("(model, scaler, eps=1e-05, **kwargs)")  # keyword-only became positional
    assert diffs("(model, scaler, *, eps=1e-05)")  # **kwargs dropped
    assert diffs("(model, scaler, *, eps=1e-05, extra=1, **kwargs)")  # unlisted addition
    assert diffs("(model, scaler, extra, *, eps=1e-05, **kwargs)")  # addition without default
    # Object defaults compare by class, not address.
    assert parse_signature("(t=<a.B object at 0x7f00>)") == parse_signature("(t=<a.B object at 0x1234>)")


def test_qwen3_matches_torchtune_main():
    """torchtune.models.qwen3 is not in v0.6.1; its component builder and names follow the manifest's note."""
    import torchtune.models.qwen3 as qwen3

    note = MANIFEST["_notes"]["qwen3"]
    signature = re.search(r"qwen3(\(vocab_size.*?\));", note).group(1)
    problems, _ = compare_params("torchtune.models.qwen3.qwen3", parse_signature(signature), our_signature(qwen3.qwen3))
    assert not problems, problems
    sizes = [f"{s}_{v}" for s in ("0_6b", "1_7b", "4b", "8b", "14b") for v in ("base", "instruct")] + ["32b"]
    expected = {f"{p}qwen3_{s}" for s in sizes for p in ("", "lora_")} | {"qwen3", "lora_qwen3"}
    assert expected <= set(qwen3.__all__), sorted(expected - set(qwen3.__all__))
