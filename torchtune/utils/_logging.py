import logging
from typing import Optional


def get_logger(level: Optional[str] = None) -> logging.Logger:
    """Return the package logger, configured once with a plain stdout handler.

    Args:
        level (Optional[str]): logging level name such as ``"INFO"``; unchanged if None.

    Returns:
        logging.Logger: the ``torchtune`` logger.
    """
    logger = logging.getLogger("torchtune")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.INFO)
    if level is not None:
        logger.setLevel(getattr(logging, level.upper()))
    return logger
