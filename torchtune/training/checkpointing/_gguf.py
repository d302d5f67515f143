"""GGUF (llama.cpp / Ollama) checkpoints: tensor names, the builder call a file describes, writing.

GGUF names tensors ``blk.{i}.attn_q.weight``, ``token_embd.weight``...; its shapes are written
innermost first (``[in, out]``). For the ``llama`` architecture llama.cpp's converter permutes the
q/k rows of Hugging Face checkpoints into the interleaved-pair RoPE layout, which is the layout
torchtune's Llama models use, so GGUF q/k weights load into our models without a permutation (and
``transformers`` undoes that permutation when it reads GGUF into its rotate-half models).
"""

from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np
import torch

from torchtune.training.checkpointing._io import _temp_file
from torchtune.utils._gguf import GGUFFile, _import_gguf

StateDict = Dict[str, torch.Tensor]

# GGUF per-layer suffix -> torchtune per-layer suffix (the Llama block).
_LAYER_NAMES = {
    "attn_norm.weight": "sa_norm.scale",
    "attn_q.weight": "attn.q_proj.weight",
    "attn_k.weight": "attn.k_proj.weight",
    "attn_v.weight": "attn.v_proj.weight",
    "attn_output.weight": "attn.output_proj.weight",
    "ffn_norm.weight": "mlp_norm.scale",
    "ffn_gate.weight": "mlp.w1.weight",
    "ffn_down.weight": "mlp.w2.weight",
    "ffn_up.weight": "mlp.w3.weight",
}
_TOP_NAMES = {"token_embd.weight": "tok_embeddings.weight", "output_norm.weight": "norm.scale",
              "output.weight": "output.weight"}
_TUNE_LAYER = {v: k for k, v in _LAYER_NAMES.items()}
_TUNE_TOP = {v: k for k, v in _TOP_NAMES.items()}

# GGUF architectures we build, and the builders (dense, LoRA) that take their dimensions.
_BUILDERS = {"llama": ("torchtune.models.llama3_2.llama3_2", "torchtune.models.llama3_2.lora_llama3_2")}
# Model types whose checkpoints are Llama-architecture GGUF files.
LLAMA_MODEL_TYPES = ("LLAMA2", "LLAMA3", "LLAMA3_2", "MISTRAL")

# Output types save_gguf writes: name -> (ggml type of 2-D weights, llama.cpp file type id).
OUTPUT_TYPES = {"F16": ("F16", 1), "BF16": ("BF16", 32), "Q8_0": ("Q8_0", 7), "F32": ("F32", 0)}


def gguf_to_tune_name(name: str) -> str:
    """torchtune key of a GGUF tensor name (``blk.3.attn_q.weight`` -> ``layers.3.attn.q_proj.weight``).

    Raises:
        KeyError: if the name is not a tensor of a Llama-architecture block.
    """
    if name in _TOP_NAMES:
        return _TOP_NAMES[name]
    parts = name.split(".", 2)
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in _LAYER_NAMES:
        return f"layers.{parts[1]}.{_LAYER_NAMES[parts[2]]}"
    raise KeyError(name)


def tune_to_gguf_name(key: str) -> str:
    """GGUF tensor name of a torchtune key (the inverse of :func:`gguf_to_tune_name`).

    Raises:
        KeyError: if the key is not a weight of a Llama-architecture model.
    """
    if key in _TUNE_TOP:
        return _TUNE_TOP[key]
    parts = key.split(".", 2)
    if len(parts) == 3 and parts[0] == "layers" and parts[1].isdigit() and parts[2] in _TUNE_LAYER:
        return f"blk.{parts[1]}.{_TUNE_LAYER[parts[2]]}"
    raise KeyError(key)


def _architecture(gguf_file: GGUFFile) -> str:
    arch = gguf_file.require("general.architecture")
    if arch not in _BUILDERS:
        raise ValueError(f"{gguf_file.path}: GGUF architecture {arch!r} is not supported yet; supported: "
                         f"{sorted(_BUILDERS)}")
    return arch


def _int_if_whole(x: float) -> Union[int, float]:
    # The Llama builders annotate rope_base as int, and configs are type-checked against it.
    return int(x) if x.is_integer() else x


def gguf_dims(gguf_file: GGUFFile) -> Dict[str, Any]:
    """The model dimensions a GGUF file's metadata gives, as builder keyword arguments.

    Args:
        gguf_file (GGUFFile): an opened file.

    Returns:
        Dict[str, Any]: ``vocab_size``, ``num_layers``, ``num_heads``, ``num_kv_heads``,
        ``embed_dim``, ``intermediate_dim``, ``max_seq_len`` (the training context length),
        ``norm_eps``, ``rope_base``, ``scale_factor`` (1: no RoPE scaling) and
        ``tie_word_embeddings`` (True when the file has no ``output.weight``).

    Raises:
        ValueError: naming the file and the key, for a missing key, an unsupported architecture,
            RoPE scaling, or a RoPE dimension other than the head dimension.
    """
    arch = _architecture(gguf_file)

    def key(name: str) -> Any:
        return gguf_file.require(f"{arch}.{name}")

    embed_dim, num_heads = int(key("embedding_length")), int(key("attention.head_count"))
    head_dim = embed_dim // num_heads
    rope_dim = int(gguf_file.get(f"{arch}.rope.dimension_count", head_dim))
    if rope_dim != head_dim:
        raise ValueError(f"{gguf_file.path}: {arch}.rope.dimension_count is {rope_dim}, but our builders rotate the "
                         f"whole head ({head_dim})")
    scaling = gguf_file.get(f"{arch}.rope.scaling.type", "none")
    if scaling != "none" or "rope_freqs.weight" in gguf_file.tensors:
        raise ValueError(f"{gguf_file.path}: RoPE scaling ({scaling!r}, or a rope_freqs tensor) is not supported "
                         "yet for GGUF checkpoints")
    tokens = gguf_file.get("tokenizer.ggml.tokens")
    vocab_size = gguf_file.get(f"{arch}.vocab_size", len(tokens) if tokens is not None else None)
    if vocab_size is None:
        vocab_size = gguf_file.shape("token_embd.weight")[0]
    return dict(
        vocab_size=int(vocab_size),
        num_layers=int(key("block_count")),
        num_heads=num_heads,
        num_kv_heads=int(gguf_file.get(f"{arch}.attention.head_count_kv", num_heads)),
        embed_dim=embed_dim,
        intermediate_dim=int(key("feed_forward_length")),
        max_seq_len=int(key("context_length")),
        # Stored as float32: 1e-5 reads back as 9.99999975e-06; its shortest repr is what was meant.
        norm_eps=float(str(np.float32(key("attention.layer_norm_rms_epsilon")))),
        rope_base=_int_if_whole(float(gguf_file.get(f"{arch}.rope.freq_base", 10000.0))),
        scale_factor=1,
        tie_word_embeddings="output.weight" not in gguf_file.tensors,
    )


def gguf_model_config(
    path: Union[str, Path], max_seq_len: Optional[int] = None, **lora_args: Any
) -> Dict[str, Any]:
    """The builder call that constructs the model a GGUF file holds, as a config node.

    The result can be passed to ``torchtune.config.instantiate`` or written into a YAML config's
    ``model:`` section. With LoRA arguments (``lora_attn_modules``, ``lora_rank``, ``lora_alpha``,
    ...), the LoRA builder of the same family is named instead.

    Args:
        path (Union[str, Path]): the ``.gguf`` file.
        max_seq_len (Optional[int]): override of the file's context length (sizes RoPE caches and
            the KV cache; SmolLM2's 8192 is more than a short fine-tune needs). Default None.
        **lora_args: arguments of the LoRA builder; none gives the dense builder.

    Returns:
        Dict[str, Any]: ``{"_component_": "torchtune.models.llama3_2.llama3_2", "vocab_size": ..., ...}``.

    Raises:
        ValueError: see :func:`gguf_dims`.
    """
    gguf_file = GGUFFile(path)
    dense, lora = _BUILDERS[_architecture(gguf_file)]
    dims = gguf_dims(gguf_file)
    if max_seq_len is not None:
        dims["max_seq_len"] = int(max_seq_len)
    return {"_component_": lora if lora_args else dense, **dims, **lora_args}


def hf_config_from_dims(dims: Dict[str, Any]) -> Dict[str, Any]:
    """A Hugging Face ``LlamaForCausalLM`` ``config.json`` for builder dimensions from :func:`gguf_dims`."""
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
        "vocab_size": dims["vocab_size"], "hidden_size": dims["embed_dim"],
        "intermediate_size": dims["intermediate_dim"], "num_hidden_layers": dims["num_layers"],
        "num_attention_heads": dims["num_heads"], "num_key_value_heads": dims["num_kv_heads"],
        "head_dim": dims["embed_dim"] // dims["num_heads"], "max_position_embeddings": dims["max_seq_len"],
        "rms_norm_eps": dims["norm_eps"], "rope_theta": dims["rope_base"],
        "rope_parameters": {"rope_type": "default", "rope_theta": dims["rope_base"]},
        "tie_word_embeddings": dims["tie_word_embeddings"], "attention_bias": False, "mlp_bias": False,
    }


def load_gguf_state_dict(gguf_file: GGUFFile, dtype: torch.dtype = torch.float32) -> StateDict:
    """Dequantize every tensor of a Llama-architecture GGUF file into torchtune keys.

    Args:
        gguf_file (GGUFFile): an opened file.
        dtype (torch.dtype): dtype of the returned tensors. Default fp32.

    Returns:
        StateDict: torchtune-layout weights (no ``output.weight`` for a tied model).

    Raises:
        ValueError: naming the file and the tensor, for a tensor that is not part of a Llama
            model, whose shape disagrees with the metadata, or whose data is damaged.
    """
    dims = gguf_dims(gguf_file)
    head_dim = dims["embed_dim"] // dims["num_heads"]
    expected = {
        "attn.q_proj.weight": [dims["num_heads"] * head_dim, dims["embed_dim"]],
        "attn.k_proj.weight": [dims["num_kv_heads"] * head_dim, dims["embed_dim"]],
        "attn.v_proj.weight": [dims["num_kv_heads"] * head_dim, dims["embed_dim"]],
        "attn.output_proj.weight": [dims["embed_dim"], dims["num_heads"] * head_dim],
        "mlp.w1.weight": [dims["intermediate_dim"], dims["embed_dim"]],
        "mlp.w2.weight": [dims["embed_dim"], dims["intermediate_dim"]],
        "mlp.w3.weight": [dims["intermediate_dim"], dims["embed_dim"]],
        "sa_norm.scale": [dims["embed_dim"]], "mlp_norm.scale": [dims["embed_dim"]],
    }
    top = {"tok_embeddings.weight": [dims["vocab_size"], dims["embed_dim"]], "norm.scale": [dims["embed_dim"]],
           "output.weight": [dims["vocab_size"], dims["embed_dim"]]}
    out: StateDict = {}
    for name in gguf_file.tensors:
        try:
            key = gguf_to_tune_name(name)
        except KeyError:
            raise ValueError(f"{gguf_file.path}: tensor {name!r} is not part of a Llama-architecture model") from None
        want = top.get(key) or expected[key.split(".", 2)[2]]
        if key.startswith("layers.") and int(key.split(".")[1]) >= dims["num_layers"]:
            raise ValueError(f"{gguf_file.path}: tensor {name!r} is beyond block_count {dims['num_layers']}")
        if gguf_file.shape(name) != want:
            raise ValueError(f"{gguf_file.path}: tensor {name!r} has shape {gguf_file.shape(name)}, the metadata "
                             f"implies {want}")
        out[key] = gguf_file.load_tensor(name, dtype)
    missing = [k for k in (list(top)[:2] + [f"layers.{i}.{s}" for i in range(dims["num_layers"]) for s in expected])
               if k not in out]
    if missing:
        raise ValueError(f"{gguf_file.path} has no tensor {tune_to_gguf_name(missing[0])!r} "
                         f"({len(missing)} tensors missing; truncated or not a complete model?)")
    return out


def _tensor_data(gguf, value: torch.Tensor, qtype_name: str):
    """numpy data and ggml type to write for one tensor."""
    array = value.detach().to(torch.float32).cpu().numpy()
    qtype = gguf.GGMLQuantizationType[qtype_name]
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    if array.ndim < 2 or qtype_name == "F32":
        # Norm scales stay F32, as llama.cpp's converter writes them.
        return array, gguf.GGMLQuantizationType.F32
    if qtype_name == "F16":
        return array.astype(np.float16), gguf.GGMLQuantizationType.F16
    if array.shape[-1] % block:
        # A row that does not split into whole blocks cannot use a block type; llama.cpp falls
        # back to F16 the same way.
        return array.astype(np.float16), gguf.GGMLQuantizationType.F16
    return gguf.quants.quantize(array, qtype), qtype


def save_gguf(
    state_dict: StateDict,
    path: Union[str, Path],
    dims: Dict[str, Any],
    metadata: Dict[str, Any],
    output_type: str = "F16",
    name: Optional[str] = None,
) -> Path:
    """Write torchtune-layout (merged) Llama weights as a GGUF file llama.cpp loads.

    The file is written under a temporary name in the same folder and renamed into place.

    Args:
        state_dict (StateDict): torchtune-layout weights; without ``output.weight`` the model is
            tied (llama.cpp then reuses ``token_embd``).
        path (Union[str, Path]): the ``.gguf`` file to write.
        dims (Dict[str, Any]): builder dimensions (see :func:`gguf_dims`); written as the
            ``llama.*`` keys (block count, lengths, heads, RoPE base and dimension, norm epsilon).
        metadata (Dict[str, Any]): further keys to carry over, typically every ``tokenizer.*`` key
            (vocabulary, merges or scores, special ids, chat template) and ``general.*`` keys, each
            as ``key -> (value, GGUFValueType, sub_type or None)``.
        output_type (str): ``"F16"``, ``"BF16"``, ``"Q8_0"`` or ``"F32"`` for the 2-D weights
            (norm scales are always F32). Default ``"F16"``.
        name (Optional[str]): ``general.name``. Default None (the one in ``metadata``, if any).

    Returns:
        Path: ``path``.

    Raises:
        ValueError: on an unknown ``output_type`` or a key that is not a Llama weight.
    """
    gguf = _import_gguf()
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"output_type {output_type!r} is not one of {sorted(OUTPUT_TYPES)}")
    qtype_name, file_type = OUTPUT_TYPES[output_type]
    path = Path(path)
    tensors = []
    for key, value in state_dict.items():
        try:
            gguf_name = tune_to_gguf_name(key)
        except KeyError:
            raise ValueError(f"{key!r} is not a weight of a Llama-architecture model; merge adapters before "
                             "saving GGUF") from None
        tensors.append((gguf_name, *_tensor_data(gguf, value, qtype_name)))
    with _temp_file(path) as tmp:
        writer = gguf.GGUFWriter(str(tmp), "llama")
        if name is not None:
            writer.add_name(name)
        for key, (value, vtype, sub_type) in metadata.items():
            if key in ("general.architecture", "general.file_type", "general.quantization_version") or \
                    key.startswith("llama.") or (key == "general.name" and name is not None):
                continue
            writer.add_key_value(key, value, vtype, sub_type)
        writer.add_block_count(dims["num_layers"])
        writer.add_context_length(dims["max_seq_len"])
        writer.add_embedding_length(dims["embed_dim"])
        writer.add_feed_forward_length(dims["intermediate_dim"])
        writer.add_head_count(dims["num_heads"])
        writer.add_head_count_kv(dims["num_kv_heads"])
        writer.add_rope_freq_base(float(dims["rope_base"]))
        writer.add_rope_dimension_count(dims["embed_dim"] // dims["num_heads"])
        writer.add_layer_norm_rms_eps(float(dims["norm_eps"]))
        writer.add_vocab_size(dims["vocab_size"])
        writer.add_file_type(file_type)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        for gguf_name, data, qtype in tensors:
            writer.add_tensor(gguf_name, data, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return path
