import os

from omegaconf import DictConfig

from torchtune.config._redaction import redacted_yaml


def log_config(recipe_name: str, cfg: DictConfig) -> None:
    """Log the final config (file plus overrides, interpolations resolved) a recipe runs with.

    Only rank 0 logs, so a run on several processes prints it once. Secrets are masked by
    :func:`torchtune.config.redact_secrets` (credential-like keys, ``${oc.env:...}`` values).

    Args:
        recipe_name (str): name shown in the header, e.g. ``"LoRAFinetuneRecipeSingleDevice"``.
        cfg (DictConfig): the config the recipe received.
    """
    # torchrun sets RANK; reading it avoids importing torch.distributed just to log.
    if os.environ.get("RANK", "0") != "0":
        return
    from torchtune.utils import get_logger  # deferred: torchtune.utils imports torch

    text = redacted_yaml(cfg)
    get_logger().info(f"Running {recipe_name} with resolved config:\n\n{text}")
