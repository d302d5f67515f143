"""Checkpointer base (resume logic, recipe state, atomic epoch folders) and the Meta / torchtune formats."""

import shutil
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch

from torchtune._errors import CheckpointWriteError
from torchtune.models.convert_weights import meta_to_tune, tune_to_meta
from torchtune.training.checkpointing._constants import (
    ADAPTER_CONFIG,
    ADAPTER_DIRNAME,
    ADAPTER_KEY,
    ADAPTER_MODEL_FNAME,
    EPOCH_DIR_PREFIX,
    MODEL_KEY,
    RECIPE_STATE_DIRNAME,
    RECIPE_STATE_FNAME,
    SAVED_DIR_KEY,
    SAVED_EPOCH_KEY,
    STEP_DIR_PREFIX,
    WEIGHT_KEYS,
)
from torchtune.training.checkpointing._files import (
    CheckpointFiles,
    expand_checkpoint_files,
    pick_resume_dir,
    prune_step_dirs,
    resolve_path,
)
from torchtune.training.checkpointing._io import (
    format_size,
    load_any,
    save_safetensors,
    save_torch,
    staged_dir,
    torch_load,
)
from torchtune.training.checkpointing._model_type import ModelType, resolve_model_type
from torchtune.utils import get_logger

log = get_logger()
StateDict = Dict[str, torch.Tensor]


class _Checkpointer(ABC):
    """Shared behaviour of all checkpointers; subclasses only read and write model weights.

    Resume (``resume_from_checkpoint=True``) loads, in order:

    1. recipe state from ``recipe_checkpoint`` (default ``output_dir/recipe_state/recipe_state.pt``);
    2. the epoch folder to continue from: the one saved with that recipe state if present, else
       the newest;
    3. the adapter: ``adapter_checkpoint`` if given (looked up in that folder's ``adapter/``, then
       ``checkpoint_dir``, then ``output_dir``), else ``adapter/adapter_model.pt`` of that folder if
       it exists;
    4. model weights: the base checkpoint when an adapter was found (the folder's merged weights
       already contain it), else that folder's full weights (if it has any).
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
        safe_serialization: bool = True,
    ) -> None:
        self._checkpoint_dir = Path(checkpoint_dir)
        if not self._checkpoint_dir.is_dir():
            raise FileNotFoundError(f"checkpoint_dir does not exist: {self._checkpoint_dir}")
        self._checkpoint_files = checkpoint_files
        self._model_type = resolve_model_type(model_type)
        self._output_dir = Path(output_dir)
        self._output_dir.mkdir(parents=True, exist_ok=True)
        self._adapter_checkpoint = adapter_checkpoint
        self._recipe_checkpoint = recipe_checkpoint
        # torchtune >= 0.6 recipes pass should_load_recipe_state; older configs resume_from_checkpoint.
        self._resume = bool(resume_from_checkpoint or should_load_recipe_state)
        self._safe = safe_serialization
        self._setup()

    # ---- subclass hooks ----

    def _setup(self) -> None:
        """Format-specific checks at construction (e.g. reading config.json)."""

    @abstractmethod
    def _load_model(self, epoch_dir: Optional[Path]) -> StateDict:
        """Tune-layout weights from the base checkpoint (None) or from a saved epoch folder."""

    @abstractmethod
    def _has_model(self, epoch_dir: Path) -> bool:
        """Whether a saved epoch folder holds full model weights in this format."""

    @abstractmethod
    def _write_model(self, model: StateDict, folder: Path) -> List[Path]:
        """Write tune-layout weights (plus companion files) into ``folder``; return the files."""

    def _write_adapter(self, adapter: StateDict, adapter_config: Optional[Dict[str, Any]], folder: Path) -> List[Path]:
        path = folder / f"{ADAPTER_MODEL_FNAME}.pt"
        save_torch({k: v.detach() for k, v in adapter.items()}, path)
        return [path]

    # ---- loading ----

    @property
    def recipe_checkpoint_path(self) -> Path:
        """Where recipe state is written, and read from when ``recipe_checkpoint`` is not given."""
        return self._output_dir / RECIPE_STATE_DIRNAME / RECIPE_STATE_FNAME

    def _find(self, name: str, bases: List[Path], what: str) -> Path:
        if Path(name).is_absolute():
            candidates = [Path(name)]
        else:
            candidates = [resolve_path(name, b) for b in bases]
        for path in candidates:
            if path.is_file():
                return path
        raise FileNotFoundError(f"{what} {name!r} not found; looked at: {', '.join(map(str, candidates))}")

    def _load_recipe_state(self) -> Dict[str, Any]:
        if self._recipe_checkpoint:
            path = self._find(self._recipe_checkpoint, [self._output_dir, self._checkpoint_dir], "recipe_checkpoint")
        else:
            path = self.recipe_checkpoint_path
            if not path.is_file():
                raise FileNotFoundError(
                    f"Recipe state not found: {path}. Resuming needs a run saved with "
                    "intermediate_checkpoint=True, or recipe_checkpoint pointing at its recipe_state.pt"
                )
        state = torch_load(path)
        if not isinstance(state, dict):
            raise ValueError(f"{path} does not hold recipe state (found {type(state).__name__})")
        log.info(f"Loaded recipe state from {path}")
        return {k: v for k, v in state.items() if k not in WEIGHT_KEYS}

    def _adapter_path(self, epoch_dir: Optional[Path]) -> Optional[Path]:
        adapter_dir = None if epoch_dir is None else epoch_dir / ADAPTER_DIRNAME
        if self._adapter_checkpoint:
            bases = ([adapter_dir] if adapter_dir else []) + [self._checkpoint_dir, self._output_dir]
            return self._find(self._adapter_checkpoint, bases, "adapter_checkpoint")
        if self._resume and adapter_dir is not None:
            path = adapter_dir / f"{ADAPTER_MODEL_FNAME}.pt"
            return path if path.is_file() else None
        return None

    def load_checkpoint(self) -> Dict[str, Any]:
        """Load model weights (tune layout), and the adapter and recipe state where they apply.

        Returns:
            Dict[str, Any]: ``{"model": state_dict}``; plus ``"adapter"`` when an adapter checkpoint
            is given or found on resume; plus every recipe-state key (``optimizer``, ``seed``,
            ``epochs_run``...) when resuming.

        Raises:
            FileNotFoundError: naming the missing file.
            ValueError: naming the file that is corrupt, truncated, or has keys of another format.
        """
        recipe_state = self._load_recipe_state() if self._resume else {}
        saved_epoch = recipe_state.pop(SAVED_EPOCH_KEY, None)
        saved_dir = recipe_state.pop(SAVED_DIR_KEY, None)
        epoch_dir = pick_resume_dir(self._output_dir, saved_epoch, saved_dir) if self._resume else None
        adapter_path = self._adapter_path(epoch_dir)
        from_epoch = (
            epoch_dir if epoch_dir is not None and adapter_path is None and self._has_model(epoch_dir) else None
        )
        if from_epoch is not None:
            log.info(f"Resuming model weights from {from_epoch}")
        state: Dict[str, Any] = {MODEL_KEY: self._load_model(from_epoch)}
        if adapter_path is not None:
            adapter = load_any(adapter_path)
            if any(k.startswith("base_model.model.") for k in adapter):
                raise ValueError(
                    f"{adapter_path} is in the PEFT layout; adapter_checkpoint must be the torchtune-layout "
                    f"{ADAPTER_MODEL_FNAME}.pt written next to it"
                )
            log.info(f"Loaded adapter weights from {adapter_path}")
            state[ADAPTER_KEY] = adapter
        state.update(recipe_state)
        return state

    # ---- saving ----

    def save_checkpoint(
        self,
        state_dict: Dict[str, Any],
        epoch: int,
        intermediate_checkpoint: bool = False,
        adapter_only: bool = False,
        *,
        step: Optional[int] = None,
        keep_last_n_checkpoints: Optional[int] = None,
    ) -> List[Path]:
        """Write ``output_dir/epoch_{epoch}/`` (or ``output_dir/step_{step}/`` for a mid-epoch save;
        weights, adapter in ``adapter/``) and, for intermediate checkpoints,
        ``output_dir/recipe_state/recipe_state.pt`` recording which folder it belongs to.

        The epoch folder is built under a hidden temporary name and swapped in whole, and the recipe
        state is written to a temporary file and renamed, so a crash never leaves a partial
        checkpoint under a final name.

        Args:
            state_dict (Dict[str, Any]): ``"model"`` (tune-layout merged weights; ignored with
                ``adapter_only``), optional ``"adapter"`` and ``"adapter_config"``, and recipe state
                (every other key) for intermediate checkpoints.
            epoch (int): epoch number used in the folder name.
            intermediate_checkpoint (bool): also write recipe state for resuming. Default False.
            adapter_only (bool): write only the adapter. Default False.
            step (Optional[int]): global step of a mid-epoch save; names the folder ``step_{step}``.
            keep_last_n_checkpoints (Optional[int]): after a successful save, delete all but the
                newest N ``step_*`` folders (epoch folders are kept). Default None (keep all).

        Returns:
            List[Path]: the files written, at their final paths.

        Raises:
            ValueError: if the weights to write are missing from ``state_dict``.
            CheckpointWriteError: (an ``OSError``) if a write fails, e.g. a full disk; the
                folders and recipe state already on disk are left as they were.
        """
        if not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
        if adapter_only and ADAPTER_KEY not in state_dict:
            raise ValueError(f"adapter_only=True but state_dict has no {ADAPTER_KEY!r} key")
        if not adapter_only and MODEL_KEY not in state_dict:
            raise ValueError(f"state_dict has no {MODEL_KEY!r} key (pass adapter_only=True to save only the adapter)")
        name = f"{EPOCH_DIR_PREFIX}{epoch}" if step is None else f"{STEP_DIR_PREFIX}{step}"
        final = self._output_dir / name
        try:
            return self._save(state_dict, epoch, name, final, intermediate_checkpoint, adapter_only,
                              keep_last_n_checkpoints)
        except CheckpointWriteError:
            raise
        except OSError as err:
            # Writes go to temporary names and are renamed into place, so nothing complete was replaced.
            raise CheckpointWriteError(
                err.errno, f"could not write the checkpoint {final} ({err.strerror or err}"
                f"{': ' + str(err.filename) if err.filename else ''}); the checkpoints already in "
                f"{self._output_dir} are intact"
            ) from err

    def _save(self, state_dict: Dict[str, Any], epoch: int, name: str, final: Path, intermediate_checkpoint: bool,
              adapter_only: bool, keep_last_n_checkpoints: Optional[int]) -> List[Path]:
        with staged_dir(final) as stage:
            staged: List[Path] = []
            if not adapter_only:
                staged += self._write_model(state_dict[MODEL_KEY], stage)
            if ADAPTER_KEY in state_dict:
                adapter_dir = stage / ADAPTER_DIRNAME
                adapter_dir.mkdir()
                staged += self._write_adapter(state_dict[ADAPTER_KEY], state_dict.get(ADAPTER_CONFIG), adapter_dir)
        written = [final / p.relative_to(stage) for p in staged]
        if intermediate_checkpoint:
            recipe_state = {k: v for k, v in state_dict.items() if k not in WEIGHT_KEYS}
            recipe_state[SAVED_EPOCH_KEY] = epoch
            recipe_state[SAVED_DIR_KEY] = name
            save_torch(recipe_state, self.recipe_checkpoint_path)
            written.append(self.recipe_checkpoint_path)
        for path in written:
            log.info(f"Saved {path} ({format_size(path.stat().st_size)})")
        if keep_last_n_checkpoints is not None:
            # Only after the recipe state points at the new folder may older ones go.
            for old in prune_step_dirs(self._output_dir, keep_last_n_checkpoints, keep=final):
                log.info(f"Removed old checkpoint {old}")
        return written

    def _copy_companions(self, names, folder: Path) -> List[Path]:
        copied = []
        for name in names:
            src = self._checkpoint_dir / name
            if src.is_file():
                shutil.copy2(src, folder / name)
                copied.append(folder / name)
        return copied


def _merge(target: StateDict, part: StateDict, path: Path, owners: Dict[str, Path]) -> None:
    """Add ``part`` (loaded from ``path``) to ``target``, refusing a key that two files define."""
    for key in part:
        if key in owners:
            raise ValueError(f"Key {key!r} appears in both {owners[key]} and {path}")
        owners[key] = path
    target.update(part)


class FullModelTorchTuneCheckpointer(_Checkpointer):
    """Checkpointer for weights already in the torchtune layout.

    Reads ``.safetensors``, ``.pt``, ``.pth`` or ``.bin`` files (several are merged); writes
    ``epoch_{N}/model.safetensors`` (``model.pt`` with ``safe_serialization=False``).

    Args:
        checkpoint_dir (Union[str, Path]): folder of the input checkpoint.
        checkpoint_files (CheckpointFiles): file names relative to ``checkpoint_dir``.
        model_type (Union[str, ModelType]): model family (kept for symmetry; no conversion happens).
        output_dir (Union[str, Path]): where epoch folders and recipe state go.
        adapter_checkpoint (Optional[str]): torchtune-layout adapter file to load. Default None.
        recipe_checkpoint (Optional[str]): recipe state file to resume from. Default None.
        resume_from_checkpoint (bool): load recipe state and continue a run. Default False.
        should_load_recipe_state (bool): alias of ``resume_from_checkpoint``. Default False.
        safe_serialization (bool): keyword-only; write safetensors (else ``torch.save``). Default True.

    Raises:
        FileNotFoundError: if ``checkpoint_dir`` does not exist.
        ValueError: on an unknown ``model_type``.
    """

    _weights_only = True

    def load_checkpoint(self, weights_only: bool = True) -> Dict[str, Any]:
        """Load model weights, and the adapter and recipe state where they apply.

        Args:
            weights_only (bool): load ``.pt``/``.pth``/``.bin`` model files with ``torch.load``'s
                ``weights_only``; pass False only for trusted files that pickle other objects.
                Default True.

        Returns:
            Dict[str, Any]: see ``_Checkpointer.load_checkpoint``.

        Raises:
            FileNotFoundError: naming the missing file.
            ValueError: naming the file that is corrupt, truncated, or has keys of another format.
        """
        self._weights_only = weights_only
        try:
            return super().load_checkpoint()
        finally:
            self._weights_only = True

    def _has_model(self, epoch_dir: Path) -> bool:
        return any((epoch_dir / n).is_file() for n in ("model.safetensors", "model.pt"))

    def _load_model(self, epoch_dir: Optional[Path]) -> StateDict:
        if epoch_dir is not None:
            paths = [p for p in (epoch_dir / "model.safetensors", epoch_dir / "model.pt") if p.is_file()][:1]
        else:
            names = expand_checkpoint_files(self._checkpoint_files, self._checkpoint_dir)
            if not names:
                raise ValueError(f"checkpoint_files is empty for {self._checkpoint_dir}")
            paths = [resolve_path(n, self._checkpoint_dir) for n in names]
        merged: StateDict = {}
        owners: Dict[str, Path] = {}
        for path in paths:
            _merge(merged, load_any(path, weights_only=self._weights_only), path, owners)
        return merged

    def _write_model(self, model: StateDict, folder: Path) -> List[Path]:
        path = folder / ("model.safetensors" if self._safe else "model.pt")
        if self._safe:
            save_safetensors(model, path)
        else:
            save_torch({k: v.detach() for k, v in model.items()}, path)
        return [path]


class FullModelMetaCheckpointer(_Checkpointer):
    """Checkpointer for Meta's ``consolidated.00.pth`` format (Llama family).

    Reads one ``consolidated.00.pth`` (``torch.load`` with ``weights_only=True``), converts with
    ``meta_to_tune``; writes ``epoch_{N}/consolidated.00.pth`` with ``tune_to_meta`` and copies
    ``params.json`` and ``tokenizer.model`` when the input folder has them. For ``LLAMA3_2``
    (tied embeddings in the published sizes) an ``output.weight`` equal to the embedding table is
    dropped on load, and a tied model is saved with that copy, as Meta's files have it.

    Args:
        checkpoint_dir (Union[str, Path]): folder of the input checkpoint.
        checkpoint_files (CheckpointFiles): one file name, e.g. ``["consolidated.00.pth"]``.
        model_type (Union[str, ModelType]): model family.
        output_dir (Union[str, Path]): where epoch folders and recipe state go.
        adapter_checkpoint (Optional[str]): torchtune-layout adapter file to load. Default None.
        recipe_checkpoint (Optional[str]): recipe state file to resume from. Default None.
        resume_from_checkpoint (bool): load recipe state and continue a run. Default False.
        should_load_recipe_state (bool): alias of ``resume_from_checkpoint``. Default False.

    Raises:
        FileNotFoundError: if ``checkpoint_dir`` does not exist.
        ValueError: on an unknown ``model_type``.
    """

    _FNAME = "consolidated.00.pth"
    _COMPANIONS = ("params.json", "tokenizer.model")

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
    ) -> None:
        # Meta checkpoints are torch.save files: there is no safetensors choice to make.
        super().__init__(
            checkpoint_dir,
            checkpoint_files,
            model_type,
            output_dir,
            adapter_checkpoint,
            recipe_checkpoint,
            resume_from_checkpoint,
            should_load_recipe_state,
            safe_serialization=False,
        )

    def _has_model(self, epoch_dir: Path) -> bool:
        return (epoch_dir / self._FNAME).is_file()

    def _load_model(self, epoch_dir: Optional[Path]) -> StateDict:
        if epoch_dir is not None:
            path = epoch_dir / self._FNAME
        else:
            names = expand_checkpoint_files(self._checkpoint_files, self._checkpoint_dir)
            if len(names) != 1:
                raise ValueError(
                    f"FullModelMetaCheckpointer reads exactly one file (consolidated.00.pth), got {names}"
                )
            path = resolve_path(names[0], self._checkpoint_dir)
        state = load_any(path)
        try:
            model = meta_to_tune(state)
        except KeyError as e:
            raise ValueError(f"{path}: {e.args[0]} (expected a Meta Llama checkpoint)") from None
        output, embeddings = model.get("output.weight"), model.get("tok_embeddings.weight")
        if self._model_type == ModelType.LLAMA3_2 and output is not None and embeddings is not None \
                and torch.equal(output, embeddings):
            # Meta stores a copy of the embedding table as `output` for the tied Llama 3.2 sizes;
            # a tied model has no separate output projection to load into.
            del model["output.weight"]
        return model

    def _write_model(self, model: StateDict, folder: Path) -> List[Path]:
        path = folder / self._FNAME
        meta = {k: v.detach() for k, v in tune_to_meta(model).items()}
        if self._model_type == ModelType.LLAMA3_2 and "output.weight" not in meta and "tok_embeddings.weight" in meta:
            # Tied model: Meta's reference code expects the output projection, as a copy of the table.
            meta["output.weight"] = meta["tok_embeddings.weight"].clone()
        save_torch(meta, path)
        return [path] + self._copy_companions(self._COMPANIONS, folder)
