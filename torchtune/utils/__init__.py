from torchtune.utils._device import (
    batch_to_device,
    DeviceSupport,
    get_device,
    get_device_support,
    get_torch_device_namespace,
    torch_version_ge,
)
from torchtune.utils._distributed import get_world_size_and_rank, log_rank_zero
from torchtune.utils._logging import get_logger

__all__ = [
    "DeviceSupport",
    "batch_to_device",
    "get_device",
    "get_device_support",
    "get_logger",
    "get_torch_device_namespace",
    "get_world_size_and_rank",
    "log_rank_zero",
    "torch_version_ge",
]
