import contextlib
from typing import (
    Any,
    Collection,
    Dict,
    Generator,
    Iterable,
    List,
    Literal,
    Optional,
    Protocol,
    Union,
    runtime_checkable,
)

import torch
from torch import nn

LORA_ATTN_MODULES = Literal["q_proj", "k_proj", "v_proj", "output_proj"]
_ATTN_CHOICES = ("q_proj", "k_proj", "v_proj", "output_proj")
_MLP_MODULES = ("w1", "w2", "w3")
# Parameter names adapters add under the wrapped linear's path.
_ADAPTER_PARAM_NAMES = ("lora_a.weight", "lora_b.weight", "magnitude")


@runtime_checkable
class AdapterModule(Protocol):
    """A module with trainable adapter parameters on top of frozen base parameters."""

    def adapter_params(self) -> List[str]:
        """Names of the adapter parameters relative to the module, e.g. ``["lora_a.weight"]``."""
        ...


def get_lora_module_names(
    lora_attn_modules: List[LORA_ATTN_MODULES],
    apply_lora_to_mlp: bool,
    apply_lora_to_output: bool,
) -> List[str]:
    """Names of the linear layers that get an adapter, as they appear in the model's paths.

    Args:
        lora_attn_modules (List[LORA_ATTN_MODULES]): attention projections to adapt, any of
            ``q_proj``, ``k_proj``, ``v_proj``, ``output_proj``.
        apply_lora_to_mlp (bool): also adapt the MLP's ``w1``, ``w2`` and ``w3``.
        apply_lora_to_output (bool): also adapt the final ``output`` projection.

    Returns:
        List[str]: the selected names, attention projections first.

    Raises:
        ValueError: if ``lora_attn_modules`` is not a list of valid names, or nothing is selected.
    """
    if isinstance(lora_attn_modules, str) or not isinstance(lora_attn_modules, Iterable):
        raise ValueError(
            f"lora_attn_modules must be a list of names from {list(_ATTN_CHOICES)}, "
            f"got {lora_attn_modules!r}"
        )
    names = list(dict.fromkeys(lora_attn_modules))
    bad = [n for n in names if n not in _ATTN_CHOICES]
    if bad:
        raise ValueError(
            f"Invalid entries {bad} in lora_attn_modules; valid choices are {list(_ATTN_CHOICES)}"
        )
    if apply_lora_to_mlp:
        names += list(_MLP_MODULES)
    if apply_lora_to_output:
        names.append("output")
    if not names:
        raise ValueError(
            "No layer selected for LoRA: pass lora_attn_modules from "
            f"{list(_ATTN_CHOICES)} or set apply_lora_to_mlp / apply_lora_to_output"
        )
    return names


def _is_adapter_key(key: str, lora_modules: Optional[Collection[str]] = None) -> bool:
    """Whether a state-dict key is an adapter parameter (of one of ``lora_modules`` if given)."""
    for name in _ADAPTER_PARAM_NAMES:
        if key == name or key.endswith("." + name):
            module_path = key[: -len(name)].rstrip(".")
            return lora_modules is None or module_path.rsplit(".", 1)[-1] in lora_modules
    return False


def get_adapter_params(model: nn.Module) -> Dict[str, nn.Parameter]:
    """Collect the adapter parameters of every :class:`AdapterModule` in ``model``.

    Args:
        model (nn.Module): model with adapter modules.

    Returns:
        Dict[str, nn.Parameter]: full parameter name (as in ``model.named_parameters()``) to parameter.
    """
    params = {}
    for module_name, module in model.named_modules():
        if isinstance(module, AdapterModule):
            for name in module.adapter_params():
                full_name = f"{module_name}.{name}" if module_name else name
                params[full_name] = module.get_parameter(name)
    return params


def set_trainable_params(model: nn.Module, adapter_params: Dict[str, Any]) -> None:
    """Make exactly the parameters named in ``adapter_params`` trainable; freeze all others.

    Args:
        model (nn.Module): the model.
        adapter_params (Dict[str, Any]): parameter names to train, e.g. from
            :func:`get_adapter_params`.

    Raises:
        ValueError: if a name in ``adapter_params`` is not a parameter of ``model``.
    """
    named = dict(model.named_parameters())
    unknown = [n for n in adapter_params if n not in named]
    if unknown:
        raise ValueError(f"Not parameters of the model: {_short_list(unknown)}")
    for name, param in named.items():
        param.requires_grad_(name in adapter_params)


def get_adapter_state_dict(
    state_dict: Dict[str, Any], device: Optional[Union[str, torch.device]] = "cpu"
) -> Dict[str, Any]:
    """Keep only the adapter entries (``lora_a``, ``lora_b``, ``magnitude``) of a state dict.

    Args:
        state_dict (Dict[str, Any]): full model state dict.
        device (Optional[Union[str, torch.device]]): where to put the kept tensors; None leaves them.
            Default "cpu".

    Returns:
        Dict[str, Any]: the adapter entries.
    """
    return {
        k: (v if device is None else v.to(device))
        for k, v in state_dict.items()
        if _is_adapter_key(k)
    }


@contextlib.contextmanager
def disable_adapter(model: nn.Module) -> Generator[None, None, None]:
    """Run ``model`` as its base model: every adapter module returns its base output.

    Useful for a reference model that shares weights with the trained one (e.g. DPO).
    The previous ``disabled`` flags are restored on exit, also after an exception.

    Args:
        model (nn.Module): model with adapter modules.

    Yields:
        None
    """
    modules = [
        m for m in model.modules() if isinstance(m, AdapterModule) and hasattr(m, "disabled")
    ]
    previous = [m.disabled for m in modules]
    try:
        for m in modules:
            m.disabled = True
        yield
    finally:
        for m, flag in zip(modules, previous):
            m.disabled = flag


@torch.no_grad()
def load_dora_magnitudes(model: nn.Module) -> None:
    """Set every DoRA magnitude from its (loaded) base weight; see ``DoRALinear.initialize_dora_magnitude``.

    Args:
        model (nn.Module): model whose base weights are already loaded.
    """
    for module in model.modules():
        if hasattr(module, "initialize_dora_magnitude"):
            module.initialize_dora_magnitude()


def _short_list(keys: List[str], limit: int = 10) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "")


def validate_missing_and_unexpected_for_lora(
    lora_attn_modules: Optional[List[LORA_ATTN_MODULES]],
    apply_lora_to_mlp: Optional[bool],
    apply_lora_to_output: Optional[bool],
    base_missing: Optional[List[str]] = None,
    base_unexpected: Optional[List[str]] = None,
    lora_missing: Optional[List[str]] = None,
    lora_unexpected: Optional[List[str]] = None,
    *,
    state_dict_keys: Optional[List[str]] = None,
) -> None:
    """Check the keys ``load_state_dict(..., strict=False)`` reported for a LoRA model.

    Loading the base checkpoint may only miss adapter parameters; loading an adapter
    checkpoint may only miss base parameters; neither may bring keys the model lacks.
    Which keys are adapter keys is decided by their names (``.lora_a.weight``,
    ``.lora_b.weight``, ``.magnitude``), restricted to the adapted layers when the LoRA
    settings are given, or to ``state_dict_keys`` when that is given.

    Args:
        lora_attn_modules (Optional[List[LORA_ATTN_MODULES]]): adapted attention projections; None
            when the LoRA settings are unknown (adapter keys are then recognised by name only).
        apply_lora_to_mlp (Optional[bool]): whether the MLPs are adapted.
        apply_lora_to_output (Optional[bool]): whether the output projection is adapted.
        base_missing (Optional[List[str]]): missing keys from loading the base weights.
        base_unexpected (Optional[List[str]]): unexpected keys from loading the base weights.
        lora_missing (Optional[List[str]]): missing keys from loading the adapter weights.
        lora_unexpected (Optional[List[str]]): unexpected keys from loading the adapter weights.
        state_dict_keys (Optional[List[str]]): keyword-only; keys of the model's full state dict,
            to restrict adapter keys to those the model has.

    Raises:
        RuntimeError: naming the offending keys, if any check fails.
    """
    lora_modules = None
    if lora_attn_modules is not None:
        lora_modules = set(
            get_lora_module_names(
                lora_attn_modules, bool(apply_lora_to_mlp), bool(apply_lora_to_output)
            )
        )
    model_keys = set(state_dict_keys) if state_dict_keys is not None else None

    def is_adapter(key: str) -> bool:
        return _is_adapter_key(key, lora_modules) and (model_keys is None or key in model_keys)

    problems = []
    if base_missing:
        bad = [k for k in base_missing if not is_adapter(k)]
        if bad:
            problems.append(f"base model checkpoint lacks non-adapter weights: {_short_list(bad)}")
    if base_unexpected:
        problems.append(
            f"base model checkpoint has keys the model does not: {_short_list(list(base_unexpected))}"
        )
    if lora_missing:
        bad = [k for k in lora_missing if is_adapter(k)]
        if bad:
            problems.append(f"adapter checkpoint lacks adapter weights: {_short_list(bad)}")
    if lora_unexpected:
        problems.append(
            f"adapter checkpoint has keys the model does not: {_short_list(list(lora_unexpected))}"
        )
    if problems:
        raise RuntimeError("LoRA state dict loading failed: " + "; ".join(problems))
