"""Checkpointer for GGUF files (llama.cpp / Ollama): load any ggml type, save merged weights as GGUF."""

from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch

from torchtune.training.checkpointing._checkpointer import _Checkpointer, log
from torchtune.training.checkpointing._constants import ADAPTER_MODEL_FNAME
from torchtune.training.checkpointing._convert import adapter_to_peft, get_family, peft_adapter_config
from torchtune.training.checkpointing._files import CheckpointFiles, expand_checkpoint_files, resolve_path
from torchtune.training.checkpointing._gguf import (
    LLAMA_MODEL_TYPES,
    OUTPUT_TYPES,
    gguf_dims,
    hf_config_from_dims,
    load_gguf_state_dict,
    save_gguf,
)
from torchtune.training.checkpointing._io import load_safetensors, save_json, save_safetensors
from torchtune.training.checkpointing._model_type import ModelType
from torchtune.utils._gguf import GGUFFile

StateDict = Dict[str, torch.Tensor]

GGUF_FNAME = "model.gguf"
_HF_FNAME = "model.safetensors"


class FullModelGGUFCheckpointer(_Checkpointer):
    """Read a GGUF file into the torchtune layout; write merged weights back as GGUF (and HF safetensors).

    Loading dequantizes every tensor the ``gguf`` package knows (F32, F16, BF16, Q8_0, Q4_0, Q4_1,
    Q5_0, Q5_1, the K-quants Q2_K..Q6_K and more) to fp32; the recipe then casts to its training
    dtype. The model dimensions come from the file's metadata: build the model with
    :func:`torchtune.training.gguf_model_config` (the same file) so that the two agree.

    Saving writes ``output_dir/epoch_{N}/``:

    - ``model.gguf``: the merged weights in ``output_type`` with the source file's tokenizer
      (vocabulary, merges or scores, special ids, chat template) and ``general.*`` metadata, and
      the ``llama.*`` dimensions, for llama.cpp, Ollama or ``transformers``'s GGUF loader;
    - with ``save_hf_safetensors``, ``model.safetensors`` + ``config.json`` in Hugging Face layout
      (q/k rows permuted to HF's rotate-half layout), loadable with ``from_pretrained(folder)``;
      the tokenizer loads from the GGUF file in the same folder
      (``AutoTokenizer.from_pretrained(folder, gguf_file="model.gguf")``);
    - an adapter in ``adapter/``: ``adapter_model.pt`` (torchtune keys, for resuming) and, given an
      ``adapter_config``, PEFT's ``adapter_model.safetensors`` + ``adapter_config.json`` (its base
      model is the source GGUF file, loaded with ``from_pretrained(dir, gguf_file=...)``).

    Args:
        checkpoint_dir (Union[str, Path]): folder of the GGUF file.
        checkpoint_files (CheckpointFiles): one ``.gguf`` file name.
        model_type (Union[str, ModelType]): ``LLAMA3_2`` (or ``LLAMA2``, ``LLAMA3``, ``MISTRAL``)
            for a ``llama``-architecture file.
        output_dir (Union[str, Path]): where epoch folders and recipe state go.
        adapter_checkpoint (Optional[str]): torchtune-layout ``adapter_model.pt`` to load. Default None.
        recipe_checkpoint (Optional[str]): recipe state file to resume from. Default None.
        resume_from_checkpoint (bool): load recipe state and continue a run. Default False.
        should_load_recipe_state (bool): alias of ``resume_from_checkpoint``. Default False.
        output_type (str): keyword-only; ggml type of saved 2-D weights: ``"F16"``, ``"BF16"``,
            ``"Q8_0"`` or ``"F32"``. Default ``"F16"``.
        save_hf_safetensors (bool): keyword-only; also write the merged weights in Hugging Face
            layout. Default True.

    Raises:
        FileNotFoundError: if ``checkpoint_dir`` or the file does not exist.
        ValueError: for a file list that is not one ``.gguf`` file, an unsupported architecture or
            model type, an unknown ``output_type``, or a truncated or damaged file (the message
            names the file and the tensor).
    """

    def __init__(
        self,
        checkpoint_dir: Union[str, Path],
        checkpoint_files: CheckpointFiles,
        model_type: Union[str, ModelType],
        output_dir: Union[str, Path],
        adapter_checkpoint: Optional[str] = None,
        recipe_checkpoint: Optional[str] = None,
        resume_from_checkpoint: bool = False,
        should_load_recipe_state: bool = False,
        *,
        output_type: str = "F16",
        save_hf_safetensors: bool = True,
    ) -> None:
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type {output_type!r} is not one of {sorted(OUTPUT_TYPES)}")
        self._output_type = output_type
        self._save_hf = save_hf_safetensors
        super().__init__(
            checkpoint_dir, checkpoint_files, model_type, output_dir, adapter_checkpoint, recipe_checkpoint,
            resume_from_checkpoint, should_load_recipe_state,
        )

    def _setup(self) -> None:
        names = expand_checkpoint_files(self._checkpoint_files, self._checkpoint_dir)
        if len(names) != 1 or not str(names[0]).endswith(".gguf"):
            raise ValueError(f"FullModelGGUFCheckpointer reads exactly one .gguf file, got checkpoint_files={names}")
        self._path = resolve_path(names[0], self._checkpoint_dir)
        self._file = GGUFFile(self._path)
        if self._model_type.name not in LLAMA_MODEL_TYPES:
            raise ValueError(f"model_type {self._model_type.name} cannot read GGUF yet; a llama-architecture file "
                             f"takes one of {', '.join(LLAMA_MODEL_TYPES)}")
        self._dims = gguf_dims(self._file)
        # What the HF-side conversions (q/k permutation, PEFT keys) read the head sizes from.
        self._config = hf_config_from_dims(self._dims)
        self._family = get_family(self._model_type)

    @property
    def dims(self) -> Dict[str, Any]:
        """Builder dimensions from the file's metadata (see :func:`gguf_dims`)."""
        return dict(self._dims)

    def _has_model(self, epoch_dir: Path) -> bool:
        return (epoch_dir / _HF_FNAME).is_file() or (epoch_dir / GGUF_FNAME).is_file()

    def _load_model(self, epoch_dir: Optional[Path]) -> StateDict:
        if epoch_dir is None:
            sd = load_gguf_state_dict(self._file)
            log.info(f"Loaded {len(sd)} tensors from {self._path}")
            return sd
        if (epoch_dir / _HF_FNAME).is_file():
            # Resume from the full-precision copy: the GGUF one may be F16 or Q8_0.
            sd = self._family.to_tune(load_safetensors(epoch_dir / _HF_FNAME), self._config)
            if self._dims["tie_word_embeddings"]:
                sd.pop("output.weight", None)
            return sd
        return load_gguf_state_dict(GGUFFile(epoch_dir / GGUF_FNAME))

    def _write_model(self, model: StateDict, folder: Path) -> List[Path]:
        written = [save_gguf(model, folder / GGUF_FNAME, self._dims,
                             self._file.typed_metadata("general.", "tokenizer."), self._output_type)]
        if self._save_hf:
            hf_sd = self._family.from_tune(model, self._config)
            save_safetensors(hf_sd, folder / _HF_FNAME)
            dtype = next(iter(model.values())).dtype
            config = dict(self._config, torch_dtype=str(dtype).replace("torch.", ""))
            for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
                value = self._file.get(f"tokenizer.ggml.{key.replace('_token_id', '')}_token_id")
                if value is not None:
                    config[key] = int(value)
            save_json(config, folder / "config.json")
            written += [folder / _HF_FNAME, folder / "config.json"]
        return written

    def _write_adapter(self, adapter: StateDict, adapter_config: Optional[Dict[str, Any]], folder: Path) -> List[Path]:
        written = super()._write_adapter(adapter, adapter_config, folder)
        if adapter_config is None:
            log.warning("state_dict has no 'adapter_config': PEFT adapter files not written, only adapter_model.pt")
            return written
        weights = folder / f"{ADAPTER_MODEL_FNAME}.safetensors"
        config = folder / "adapter_config.json"
        peft_config = peft_adapter_config(adapter, dict(adapter_config), str(self._checkpoint_dir.resolve()))
        save_safetensors(adapter_to_peft(adapter, self._family, self._config), weights)
        save_json(peft_config, config)
        return written + [weights, config]
