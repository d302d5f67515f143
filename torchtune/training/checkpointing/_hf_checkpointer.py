"""Checkpointer for Hugging Face ``transformers`` checkpoints (safetensors or ``.bin``, sharded or not)."""

import json
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import torch

from torchtune.modules.decoder_builder import CHECKPOINT_WINDOW_KEY
from torchtune.training.checkpointing._checkpointer import _Checkpointer, _merge, log
from torchtune.training.checkpointing._constants import ADAPTER_MODEL_FNAME
from torchtune.training.checkpointing._convert import (
    adapter_to_peft,
    get_family,
    head_dims,
    peft_adapter_config,
    peft_module_path,
)
from torchtune.training.checkpointing._files import CheckpointFiles, resolve_hf_files
from torchtune._errors import CheckpointError
from torchtune.training.checkpointing._io import load_any, save_json, save_safetensors, save_torch
from torchtune.training.checkpointing._model_type import ModelType

StateDict = Dict[str, torch.Tensor]

# Copied from checkpoint_dir next to saved weights so the folder is a complete HF model.
_COMPANIONS = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
)
_INDEX = {True: "model.safetensors.index.json", False: "pytorch_model.bin.index.json"}


def declared_sliding_window(config: Dict[str, Any]) -> Optional[int]:
    """The attention window every layer of a Hugging Face model uses, from its ``config.json``.

    Args:
        config (Dict[str, Any]): parsed config.json.

    Returns:
        Optional[int]: ``sliding_window`` (Mistral v0.1: 4096); None when the key is absent or
        null, or when ``use_sliding_window`` is false (Qwen2 keeps a window size it does not use).
    """
    if config.get("use_sliding_window") is False or config.get("sliding_window") is None:
        return None
    return int(config["sliding_window"])


# Families whose config.json alternates local and global layers: every n-th layer is global.
_GLOBAL_EVERY = {"gemma2": 2, "gemma3_text": 6}


def declared_layer_windows(config: Dict[str, Any]) -> Union[None, int, List[Optional[int]]]:
    """The attention window of each layer, from ``config.json``: a list where layers differ.

    ``layer_types`` (``"sliding_attention"`` / ``"full_attention"``, written by transformers 5)
    gives the list; Gemma 2 and Gemma 3 configs without it alternate by their
    ``sliding_window_pattern`` (2 and 6). Otherwise every layer has :func:`declared_sliding_window`.

    Args:
        config (Dict[str, Any]): parsed config.json.

    Returns:
        Union[None, int, List[Optional[int]]]: one window for every layer, or one per layer (None: global).
    """
    window = declared_sliding_window(config)
    types = config.get("layer_types")
    every = config.get("sliding_window_pattern") or _GLOBAL_EVERY.get(config.get("model_type"))
    if types is None and window is not None and every and config.get("num_hidden_layers"):
        types = ["full_attention" if (i + 1) % every == 0 else "sliding_attention"
                 for i in range(int(config["num_hidden_layers"]))]
    if types is None or window is None:
        return window
    return [window if t == "sliding_attention" else None for t in types]


class FullModelHFCheckpointer(_Checkpointer):
    """Read and write Hugging Face checkpoints, converting to and from the torchtune layout.

    Loading accepts ``.safetensors`` and ``.bin`` files, one or sharded: ``checkpoint_files`` may be a
    list of names, ``{filename_format, max_filename}``, an ``*.index.json`` name, or empty (the usual
    HF names are looked for). Head counts come from ``config.json`` in ``checkpoint_dir``. The
    loaded state dict records config.json's ``sliding_window`` in its metadata, so that
    ``model.load_state_dict`` into a decoder built with another window logs a warning naming the key
    (see :func:`torchtune.modules.build_decoder`).

    A checkpoint that wraps the family's text decoder in a bigger model (for ``GEMMA3``, the
    ``Gemma3ForConditionalGeneration`` image-text checkpoints of Gemma 3 4B, 12B and 27B) loads
    as that decoder: the dimensions come from config.json's ``text_config``, the decoder's keys
    are renamed, and the vision tower and projector are left out (logged at info level). What is
    saved is then the text decoder alone, a ``Gemma3ForCausalLM`` folder whose config.json is
    derived from ``text_config``.

    Saving writes ``output_dir/epoch_{N}/`` that ``transformers`` ``from_pretrained`` loads as is:
    ``model-0000k-of-0000n.safetensors`` (same split as the input) with
    ``model.safetensors.index.json``, plus ``config.json``, ``generation_config.json`` and tokenizer
    files copied from ``checkpoint_dir``. An adapter goes to ``epoch_{N}/adapter/``: ``adapter_model.pt``
    (torchtune keys, for resuming) and, given an ``adapter_config``, ``adapter_model.safetensors`` +
    ``adapter_config.json`` that ``peft.PeftModel.from_pretrained`` loads onto the base model. Keeping
    the adapter out of the merged folder stops PEFT from applying it a second time.

    Args:
        checkpoint_dir (Union[str, Path]): folder of the HF checkpoint (with config.json).
        checkpoint_files (CheckpointFiles): weight files, see above.
        model_type (Union[str, ModelType]): model family, e.g. ``"LLAMA3"``.
        output_dir (Union[str, Path]): where epoch folders and recipe state go.
        adapter_checkpoint (Optional[str]): torchtune-layout ``adapter_model.pt`` to load. Default None.
        recipe_checkpoint (Optional[str]): recipe state file to resume from. Default None
            (``output_dir/recipe_state/recipe_state.pt``).
        resume_from_checkpoint (bool): load recipe state and continue a run. Default False.
        safe_serialization (bool): write safetensors (else ``.bin`` via ``torch.save``). Default True.
        should_load_recipe_state (bool): alias of ``resume_from_checkpoint``. Default False.

    Raises:
        FileNotFoundError: if ``checkpoint_dir`` or its ``config.json`` does not exist.
        ValueError: on an unknown ``model_type``.
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
        safe_serialization: bool = True,
        should_load_recipe_state: bool = False,
    ) -> None:
        # Hugging Face's order: safe_serialization comes before should_load_recipe_state here.
        super().__init__(
            checkpoint_dir,
            checkpoint_files,
            model_type,
            output_dir,
            adapter_checkpoint,
            recipe_checkpoint,
            resume_from_checkpoint,
            should_load_recipe_state,
            safe_serialization=safe_serialization,
        )

    def _setup(self) -> None:
        self._family = get_family(self._model_type)
        config_path = self._checkpoint_dir / "config.json"
        if not config_path.is_file():
            raise FileNotFoundError(f"config.json not found in {self._checkpoint_dir}; it gives the head counts")
        try:
            self._config: Dict[str, Any] = json.loads(config_path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{config_path} is not valid JSON: {e}") from None
        try:
            self._unwrap = None if self._family.unwrap is None else self._family.unwrap(self._config)
        except ValueError as e:
            raise CheckpointError(f"{config_path}: {e}") from None
        if self._unwrap is not None:
            # The model built, trained and saved is the wrapped decoder: its config is the one read and written.
            self._config = self._unwrap.config
        # HF key -> shard number of the input, so saves keep the same split.
        self._shard_of: Dict[str, int] = {}
        self._num_shards = 1

    def _has_model(self, epoch_dir: Path) -> bool:
        return any((epoch_dir / n).is_file() for n in _INDEX.values())

    def _convert_file(self, sd: StateDict, path: Path) -> StateDict:
        out: StateDict = {}
        for key, value in sd.items():
            try:
                out.update(self._family.to_tune({key: value}, self._config))
            except KeyError as e:
                raise CheckpointError(f"{path}: {e.args[0]} (model_type {self._model_type.name})") from None
            except (RuntimeError, ValueError) as e:
                raise CheckpointError(
                    f"{path}: cannot convert {key} of shape {list(value.shape)} with the head sizes of "
                    f"config.json {head_dims(self._config)}: {e}"
                ) from None
        return out

    def _decoder_part(self, sd: StateDict, path: Path) -> Tuple[StateDict, int]:
        """The wrapped decoder's tensors of one file, under its own keys; and how many were left out."""
        out: StateDict = {}
        for key, value in sd.items():
            try:
                new_key = self._unwrap.decoder_key(key)
            except KeyError as e:
                raise CheckpointError(f"{path}: {e.args[0]} (model_type {self._model_type.name})") from None
            if new_key is not None:
                out[new_key] = value
        return out, len(sd) - len(out)

    def _load_model(self, epoch_dir: Optional[Path]) -> StateDict:
        if epoch_dir is not None:
            index = next(n for n in _INDEX.values() if (epoch_dir / n).is_file())
            paths, weight_map = resolve_hf_files([index], epoch_dir)
        else:
            paths, weight_map = resolve_hf_files(self._checkpoint_files, self._checkpoint_dir)
        # Our own saves (epoch folders) hold the decoder alone already.
        unwrap = self._unwrap if epoch_dir is None else None
        merged: StateDict = {}
        owners: Dict[str, Path] = {}
        left_out = 0
        self._shard_of, self._num_shards = {}, len(paths)
        for shard, path in enumerate(paths):
            sd = load_any(path)
            if weight_map is not None:
                absent = [k for k, f in weight_map.items() if Path(f).name == path.name and k not in sd]
                if absent:
                    raise ValueError(f"{path} is missing key {absent[0]!r} that the index lists for it")
            if unwrap is not None:
                sd, dropped = self._decoder_part(sd, path)
                left_out += dropped
            self._shard_of.update(dict.fromkeys(sd, shard))
            _merge(merged, self._convert_file(sd, path), path, owners)
        if self._config.get("tie_word_embeddings") and "output.weight" in merged:
            # Tied models have no separate output projection to load into.
            del merged["output.weight"]
        log.info(f"Loaded {len(merged)} tensors from {len(paths)} file(s) in {paths[0].parent}")
        if unwrap is not None:
            log.info(f"{paths[0].parent} is a {unwrap.source} checkpoint: loaded its text decoder and left out "
                     f"{left_out} tensors of {unwrap.left_out}; checkpoints saved from it are the text decoder only")
        # Attribute set on an OrderedDict: the same place torch keeps module versions.
        loaded = OrderedDict(merged)
        loaded._metadata = OrderedDict({"": {CHECKPOINT_WINDOW_KEY: declared_layer_windows(self._config)}})
        return loaded

    def _write_model(self, model: StateDict, folder: Path) -> List[Path]:
        hf_sd = self._family.from_tune(model, self._config)
        groups: List[List[str]] = [[] for _ in range(self._num_shards)]
        for key in hf_sd:
            groups[self._shard_of.get(key, self._num_shards - 1)].append(key)
        groups = [g for g in groups if g]
        stem, ext = ("model", "safetensors") if self._safe else ("pytorch_model", "bin")
        weight_map: Dict[str, str] = {}
        written: List[Path] = []
        for i, keys in enumerate(groups):
            path = folder / f"{stem}-{i + 1:05d}-of-{len(groups):05d}.{ext}"
            shard = {k: hf_sd[k] for k in keys}
            if self._safe:
                save_safetensors(shard, path)
            else:
                save_torch({k: v.detach().contiguous() for k, v in shard.items()}, path)
            weight_map.update(dict.fromkeys(keys, path.name))
            written.append(path)
        total = sum(t.numel() * t.element_size() for t in hf_sd.values())
        index = folder / _INDEX[self._safe]
        save_json({"metadata": {"total_size": total}, "weight_map": weight_map}, index)
        if self._unwrap is None:
            return written + [index] + self._copy_companions(_COMPANIONS, folder)
        # The decoder alone: its own config.json, not the wrapping model's.
        config = folder / "config.json"
        save_json(self._config, config)
        return written + [index, config] + self._copy_companions(
            tuple(n for n in _COMPANIONS if n != "config.json"), folder)

    def _write_adapter(self, adapter: StateDict, adapter_config: Optional[Dict[str, Any]], folder: Path) -> List[Path]:
        written = super()._write_adapter(adapter, adapter_config, folder)
        if adapter_config is None:
            log.warning("state_dict has no 'adapter_config': PEFT adapter files not written, only adapter_model.pt")
            return written
        if not self._family.peft_compatible:
            log.warning(
                f"{self._model_type.name} {self._family.no_peft_reason}: PEFT adapter files not written, "
                "only adapter_model.pt"
            )
            return written
        modules = {re.sub(r"\.(lora_a\.weight|lora_b\.weight|magnitude)$", "", k) for k in adapter}
        unmatched = sorted(m for m in modules if peft_module_path(m, self._family, self._config) is None)
        if unmatched:
            log.warning(f"{unmatched[0]} has no one-to-one module in this {self._config.get('model_type')} checkpoint "
                        "(a fused projection): PEFT adapter files not written, only adapter_model.pt")
            return written
        weights = folder / f"{ADAPTER_MODEL_FNAME}.safetensors"
        config = folder / "adapter_config.json"
        path_of = None
        if self._family.hf_module is not None:
            path_of = lambda m: peft_module_path(m, self._family, self._config)  # noqa: E731
        peft_config = peft_adapter_config(adapter, dict(adapter_config), str(self._checkpoint_dir.resolve()),
                                          module_path=path_of)
        save_safetensors(adapter_to_peft(adapter, self._family, self._config), weights)
        save_json(peft_config, config)
        if self._unwrap is not None:
            # Named by base_model_name_or_path, the image-text folder itself is not the model to apply it to.
            log.info(f"The PEFT adapter is for the text decoder ({self._config['architectures'][0]}) of the "
                     f"{self._unwrap.source} checkpoint {self._checkpoint_dir}; apply it to that decoder "
                     "(docs/gemma.md shows how to save it)")
        return written + [weights, config]
