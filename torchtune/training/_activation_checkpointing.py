"""Activation checkpointing: keep only block inputs in forward, recompute the rest in backward."""
from typing import Callable, Optional, Set, Type, Union

from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
    apply_activation_checkpointing,
    checkpoint_wrapper,
    CheckpointImpl,
)
from torch.distributed.fsdp.wrap import ModuleWrapPolicy

from torchtune.utils._logging import get_logger

_log = get_logger()

# Non-reentrant checkpointing works with frozen inputs (LoRA), keyword arguments and torch.compile.
_wrap = lambda module: checkpoint_wrapper(module, checkpoint_impl=CheckpointImpl.NO_REENTRANT)  # noqa: E731


def set_activation_checkpointing(
    model: nn.Module,
    auto_wrap_policy: Union[Set[Type[nn.Module]], Callable[..., bool]],
    **kwargs,
) -> None:
    """Wrap the matching sub-modules of ``model`` with (non-reentrant) activation checkpointing, in place.

    The state-dict keys of the model are unchanged: the wrapper strips its own prefix.

    Args:
        model (nn.Module): the model.
        auto_wrap_policy (Union[Set[Type[nn.Module]], Callable[..., bool]]): module classes to
            wrap (e.g. ``{TransformerSelfAttentionLayer}``), or an FSDP-style policy callable.
        **kwargs: passed to torch's ``apply_activation_checkpointing``
            (``torch.distributed.algorithms._checkpoint.checkpoint_wrapper``).

    Raises:
        ValueError: if a set of classes matches no module of ``model`` (nothing would be checkpointed).
    """
    if isinstance(auto_wrap_policy, (set, frozenset, list, tuple)):
        classes = tuple(auto_wrap_policy)
        if not any(isinstance(m, classes) for m in model.modules()):
            names = sorted(c.__name__ for c in classes)
            raise ValueError(
                f"Activation checkpointing policy {names} matches no module of {type(model).__name__}"
            )
        auto_wrap_policy = ModuleWrapPolicy(set(classes))
    kwargs.setdefault("checkpoint_wrapper_fn", _wrap)
    apply_activation_checkpointing(model, auto_wrap_policy=auto_wrap_policy, **kwargs)


def apply_selective_activation_checkpointing(
    model: nn.Module, ac_mode: str, ac_option: Optional[Union[int, str]] = None
) -> None:
    """Checkpoint all, or every N-th, layer of ``model.layers``, trading memory for speed.

    Args:
        model (nn.Module): a decoder with a ``layers`` ``nn.ModuleList``; entries are replaced in place.
        ac_mode (str): ``"full"`` wraps every layer; ``"selective"`` wraps every ``ac_option``-th
            layer (layers N, 2N, ... counting from 1), so ``ac_option=2`` keeps half of the layers'
            activations and recomputes the other half.
        ac_option (Optional[Union[int, str]]): N for ``"selective"``. Op-level selection (``"op"``)
            is not supported.

    Raises:
        ValueError: for an unknown mode, a non-positive N, ``"op"``, or a model without ``layers``.
    """
    layers = getattr(model, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"{type(model).__name__} has no `layers` ModuleList to checkpoint")
    if ac_mode == "full":
        every_n = 1
    elif ac_mode == "selective":
        if isinstance(ac_option, str) and not ac_option.isdigit():
            raise ValueError(f"ac_option={ac_option!r} is not supported; give an integer N (every N-th layer)")
        every_n = int(ac_option) if ac_option is not None else 0
        if every_n < 1:
            raise ValueError(f"ac_mode='selective' needs ac_option >= 1, got {ac_option!r}")
    else:
        raise ValueError(f"ac_mode={ac_mode!r} must be 'full' or 'selective'")
    for index in range(every_n - 1, len(layers), every_n):
        layers[index] = _wrap(layers[index])
    _log.info(f"Activation checkpointing ({ac_mode}): {len(layers) // every_n} of {len(layers)} layers wrapped")
