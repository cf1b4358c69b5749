"""TensorBoard logs of a training run: a record consumer of :func:`stnlab.train.loop.train`.

:class:`TensorBoardWriter` turns the run's records into scalars (``loss/train``,
``accuracy/valid``, ``lr``, ``theta transformers.0/area_ratio_median``, ...; the step is
the epoch) and, at the first epoch, every ``IMAGES_EVERY`` epochs and the last, writes
what each transformer makes of a few fixed validation images. metrics.jsonl stays the
record; these logs are for watching runs (``tensorboard --logdir DIR``). Needs the
optional ``tensorboard`` package (``pip install 'stnlab[tensorboard]'``).

Example:
    >>> log_dir("auto", Path("runs/stn"))
    PosixPath('runs/stn/tensorboard')
    >>> log_dir("tb", Path("runs/stn"))
    PosixPath('tb/stn')
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from stnlab.config.errors import ConfigError, UserError
from stnlab.runs.records import EvalRecord, Record, ThetaRecord, TrainRecord

__all__ = ["AUTO", "IMAGES", "IMAGES_EVERY", "TensorBoardWriter", "log_dir"]

AUTO = "auto"  # train.tensorboard without a folder: the run folder's tensorboard/
IMAGES = 8  # validation images whose transformer outputs are shown
IMAGES_EVERY = 5  # epochs between two image snapshots (and the first and last epochs)
INSTALL = "pip install 'stnlab[tensorboard]'"


def log_dir(setting: str, run_folder: Path | None) -> Path:
    """Where a run's event files go: ``auto`` → RUN/tensorboard, DIR → DIR/RUN_NAME (so one
    DIR holds many runs, as ``tensorboard --logdir`` expects); without a run folder, DIR."""
    if setting == AUTO:
        if run_folder is None:
            raise ConfigError(
                "train.tensorboard needs a folder when the run writes none", "train.tensorboard"
            )
        return run_folder / "tensorboard"
    return Path(setting) / run_folder.name if run_folder is not None else Path(setting)


def _scaled(maps: Tensor) -> Tensor:
    """Feature maps (N, C, H, W) as grey images (N, 1, H, W) in [0, 1], each on its own range."""
    grey = maps.float().mean(1, keepdim=True)
    lo = grey.amin((1, 2, 3), keepdim=True)
    hi = grey.amax((1, 2, 3), keepdim=True)
    return (grey - lo) / (hi - lo).clamp_min(1e-8)


class TensorBoardWriter:
    """Writes each record of a run to TensorBoard event files in ``path``.

    Args:
        path: the log folder (see :func:`log_dir`).
        model: the model being trained, for the transformer outputs (``None``: scalars only).
        images: the images to show (N, C, H, W); moved to the model's device.
        epochs: the run's last epoch (always gets images).
        start: the last epoch already trained (a resumed run): later steps of an earlier
            try are purged, as metrics.jsonl drops them.

    Raises:
        UserError: the ``tensorboard`` package is not installed.
    """

    def __init__(
        self,
        path: Path,
        model: nn.Module | None = None,
        images: Tensor | None = None,
        epochs: int = 0,
        start: int = 0,
    ) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError(f"--tensorboard needs the tensorboard package: {INSTALL}") from None
        self.writer = SummaryWriter(str(path), purge_step=start + 1 if start else None)
        self.model, self.epochs = model, epochs
        shows = model is not None and images is not None and len(getattr(model, "transformers", ()))
        device = next(model.parameters()).device if shows else None
        self.images = images[:IMAGES].to(device) if shows else None

    def __call__(self, record: Record) -> None:
        epoch = record.epoch
        if isinstance(record, TrainRecord):
            self._scalars(
                {
                    "loss/train": record.loss,
                    "accuracy/train": record.accuracy,
                    "lr": record.lr,
                    "time/epoch_seconds": record.seconds,
                },
                epoch,
            )
            if self.images is not None and self._shows(epoch):
                self._outputs(epoch)
        elif isinstance(record, EvalRecord):
            split = record.split
            self._scalars(
                {f"loss/{split}": record.loss, f"accuracy/{split}": record.accuracy}, epoch
            )
        elif isinstance(record, ThetaRecord):
            prefix = f"theta {record.transformer}/"
            self._scalars({prefix + k: v for k, v in record.figures.items()}, epoch)
        self.writer.flush()  # watched live: every epoch on disk at once

    def _shows(self, epoch: int) -> bool:
        return epoch == 1 or epoch % IMAGES_EVERY == 0 or epoch == self.epochs

    def _scalars(self, values: dict[str, float], epoch: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, epoch)

    @torch.no_grad()
    def _outputs(self, epoch: int) -> None:
        """The input images, then each transformer's output (channels averaged)."""
        was_training = self.model.training
        self.model.eval()
        try:
            stages = self.model.transform(self.images)
        finally:
            self.model.train(was_training)
        self.writer.add_images("transformers/input", _scaled(self.images).cpu(), epoch)
        for k, (warped, _) in enumerate(stages):
            self.writer.add_images(f"transformers/output {k + 1}", _scaled(warped).cpu(), epoch)

    def close(self) -> None:
        self.writer.close()
