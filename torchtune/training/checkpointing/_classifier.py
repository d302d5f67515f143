"""Loading a language-model checkpoint into a classifier (e.g. a reward model) with a new head."""
from typing import Dict, Iterable, Tuple

import torch

from torchtune.utils._logging import get_logger

_log = get_logger()


def update_state_dict_for_classifier(
    state_dict: Dict[str, torch.Tensor],
    model_named_parameters: Iterable[Tuple[str, torch.nn.Parameter]],
    force_override: bool = False,
):
    """Make a base model's state dict loadable into a classifier whose ``output`` head differs.

    A classifier built from a language model replaces the ``[vocab_size, dim]`` output projection by a
    ``[num_classes, dim]`` head. When the checkpoint's ``output.weight`` does not fit (or
    ``force_override`` is set, or the checkpoint has none), the model's freshly initialised head is put
    in its place so ``load_state_dict`` succeeds. An ``output.bias`` is dropped: the heads have no bias.
    ``state_dict`` is updated in place.

    Args:
        state_dict (Dict[str, torch.Tensor]): the checkpoint's state dict, in the torchtune layout.
        model_named_parameters (Iterable[Tuple[str, torch.nn.Parameter]]): the classifier's
            ``named_parameters()``.
        force_override (bool): use the model's head even when the checkpoint's has the right shape
            (e.g. to start a reward model from a base model with as many classes as tokens).
            Default False.

    Raises:
        ValueError: if the model has no ``output.weight`` parameter.
    """
    params = dict(model_named_parameters)
    if "output.weight" not in params:
        raise ValueError("update_state_dict_for_classifier: the model has no 'output.weight' parameter")
    head = params["output.weight"]
    if "output.bias" in state_dict:
        _log.warning("The checkpoint's output.bias is not used by the classifier head; dropping it")
        del state_dict["output.bias"]
    saved = state_dict.get("output.weight")
    if saved is None:
        _log.info("The checkpoint has no output.weight; using the classifier's initialised head")
    elif force_override or saved.shape != head.shape:
        _log.info(
            f"Replacing the checkpoint's output.weight {tuple(saved.shape)} by the classifier's initialised "
            f"head {tuple(head.shape)}"
        )
    else:
        return
    state_dict["output.weight"] = head.detach().clone()
