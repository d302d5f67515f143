from torchtune.utils._logging import get_logger
from torchtune.utils._device import get_device

__all__ = ["get_logger", "get_device"]
