"""Metric loggers: plain text on disk, stdout, TensorBoard and Weights & Biases.

Every logger has ``log(name, data, step)``, ``log_dict(payload, step)``, ``log_config(config)``
and ``close()``. In a distributed run only rank 0 writes. ``log_config`` never records secrets:
it records only what :func:`torchtune.config.redact_secrets` returns, where values under keys
such as ``hf_token`` or ``api_key``, values read with ``${oc.env:...}`` and strings that look like
Hugging Face tokens are replaced by ``"<redacted>"``.
"""
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Protocol, Union

import torch
from omegaconf import DictConfig

# REDACTED and redact_secrets are re-exported: they lived here before config.redact_secrets.
from torchtune.config import REDACTED, redact_secrets, redacted_yaml
from torchtune.training._distributed import get_world_size_and_rank
from torchtune.utils._logging import get_logger

_log = get_logger()
Scalar = Union[float, int, torch.Tensor]


def _scalar(data: Any) -> Any:
    return data.item() if hasattr(data, "item") else data


class MetricLoggerInterface(Protocol):
    """What recipes call on a metric logger."""

    def log(self, name: str, data: Scalar, step: int) -> None:
        """Record scalar ``data`` under ``name`` at ``step``."""

    def log_dict(self, payload: Mapping[str, Scalar], step: int) -> None:
        """Record several scalars at ``step``."""

    def log_config(self, config: DictConfig) -> None:
        """Record the run's config (secrets redacted)."""

    def close(self) -> None:
        """Flush and release resources."""


class DiskLogger:
    """Append metrics to ``log_dir/log_<unix time>.txt``, one line per call, flushed every time.

    Lines read ``Step 12 | loss:1.2345 lr:2e-05``. ``log_config`` writes the redacted config next to
    the log as ``<log name>_config.yaml``.

    Args:
        log_dir (str): directory, created if missing.
        filename (Optional[str]): file name instead of ``log_<unix time>.txt``.
        **kwargs: ignored, so configs written for other loggers still instantiate.
    """

    def __init__(self, log_dir: str, filename: Optional[str] = None, **kwargs: Any) -> None:
        self.log_dir = Path(log_dir).expanduser()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._file_name = self.log_dir / (filename or f"log_{int(time.time())}.txt")
        self._file = open(self._file_name, "a")
        _log.info(f"Writing metrics to {self._file_name}")

    def path_to_log_file(self) -> Path:
        """The file metrics go to."""
        return self._file_name

    def log(self, name: str, data: Scalar, step: int) -> None:
        self._file.write(f"Step {step} | {name}:{_scalar(data)}\n")
        self._file.flush()

    def log_dict(self, payload: Mapping[str, Scalar], step: int) -> None:
        values = " ".join(f"{name}:{_scalar(data)}" for name, data in payload.items())
        self._file.write(f"Step {step} | {values}\n")
        self._file.flush()

    def log_config(self, config: DictConfig) -> None:
        path = self._file_name.with_name(self._file_name.stem + "_config.yaml")
        path.write_text(redacted_yaml(config))

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __del__(self) -> None:
        if hasattr(self, "_file"):
            self.close()


class StdoutLogger:
    """Print metrics as ``Step 12 | loss:1.2345 lr:2e-05`` lines.

    Args:
        **kwargs: ignored, so configs written for other loggers still instantiate.
    """

    def __init__(self, **kwargs: Any) -> None:
        pass

    def log(self, name: str, data: Scalar, step: int) -> None:
        print(f"Step {step} | {name}:{_scalar(data)}")

    def log_dict(self, payload: Mapping[str, Scalar], step: int) -> None:
        print(f"Step {step} | " + " ".join(f"{name}:{_scalar(data)}" for name, data in payload.items()))

    def log_config(self, config: DictConfig) -> None:
        print("Config:\n" + redacted_yaml(config))

    def close(self) -> None:
        sys.stdout.flush()


class TensorBoardLogger:
    """Write scalars to TensorBoard event files (``tensorboard --logdir <log_dir>``); rank 0 only.

    Args:
        log_dir (str): TensorBoard log directory.
        organize_logs (bool): write into a fresh ``log_dir/run_<rank>_<unix time>`` sub-directory so
            runs sharing ``log_dir`` appear as separate runs. Default True.
        **kwargs: passed to ``torch.utils.tensorboard.SummaryWriter``.
    """

    def __init__(self, log_dir: str, organize_logs: bool = True, **kwargs: Any) -> None:
        from torch.utils.tensorboard import SummaryWriter

        _, rank = get_world_size_and_rank()
        self.log_dir = str(Path(log_dir).expanduser() / f"run_{rank}_{int(time.time())}") if organize_logs else log_dir
        self._writer = SummaryWriter(log_dir=self.log_dir, **kwargs) if rank == 0 else None

    def log(self, name: str, data: Scalar, step: int) -> None:
        if self._writer is not None:
            self._writer.add_scalar(name, _scalar(data), global_step=step)

    def log_dict(self, payload: Mapping[str, Scalar], step: int) -> None:
        for name, data in payload.items():
            self.log(name, data, step)

    def log_config(self, config: DictConfig) -> None:
        if self._writer is not None:
            # Indented four spaces: TensorBoard renders text as Markdown, this keeps it verbatim.
            text = "\n".join("    " + line for line in redacted_yaml(config).splitlines())
            self._writer.add_text("config", text)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class WandBLogger:
    """Log to Weights & Biases (``pip install wandb``, then ``wandb login``); rank 0 only.

    Metrics are plotted against ``global_step`` (the optimizer step), not W&B's own call counter.

    Args:
        project (str): W&B project. Default ``"torchtune"``.
        entity (Optional[str]): user or team; the default entity if None.
        group (Optional[str]): groups runs, e.g. the ranks of one job.
        log_dir (Optional[str]): where W&B keeps its local files.
        **kwargs: passed to ``wandb.init`` (e.g. ``name``, ``tags``, ``mode="offline"``).

    Raises:
        ImportError: if ``wandb`` is not installed, saying how to install it.
    """

    def __init__(
        self,
        project: str = "torchtune",
        entity: Optional[str] = None,
        group: Optional[str] = None,
        log_dir: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        try:
            import wandb
        except ImportError as e:
            raise ImportError(
                "metric_logger=WandBLogger needs the `wandb` package: run `pip install wandb` and "
                "`wandb login`, or use torchtune.training.metric_logging.DiskLogger"
            ) from e
        self._wandb = wandb
        self.log_dir = log_dir
        _, self.rank = get_world_size_and_rank()
        self._run = None
        if self.rank == 0:
            self._run = wandb.run or wandb.init(project=project, entity=entity, group=group, dir=log_dir, **kwargs)
            self._run.define_metric("global_step")
            self._run.define_metric("*", step_metric="global_step", step_sync=True)

    def log(self, name: str, data: Scalar, step: int) -> None:
        if self._run is not None:
            self._run.log({name: _scalar(data), "global_step": step})

    def log_dict(self, payload: Mapping[str, Scalar], step: int) -> None:
        if self._run is not None:
            self._run.log({**{k: _scalar(v) for k, v in payload.items()}, "global_step": step})

    def log_config(self, config: DictConfig) -> None:
        if self._run is not None:
            self._run.config.update(redact_secrets(config), allow_val_change=True)

    def close(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None


__all__ = [
    "DiskLogger",
    "MetricLoggerInterface",
    "REDACTED",
    "StdoutLogger",
    "TensorBoardLogger",
    "WandBLogger",
    "redact_secrets",
]
