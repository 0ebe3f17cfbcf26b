"""What the detection and classification LightningModules share: ``seen`` (darknet's image counter), uint8 ->
float batches on the device, the model config saved in checkpoints (so eval / detect / convert rebuild the
network), darknet's optimisation, and pretrained weights (:func:`yolo9000.modules.pretrained.load_pretrained`)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

from yolo9000.modules.schedules import darknet_optimization


class DarknetModule(pl.LightningModule):
    """Base of :class:`DetectorModule` and :class:`ClassifierModule`; subclasses set ``self.model`` and keep
    darknet's optimisation keys in ``hparams``. ``model_config`` (the resolved model config, set by
    :func:`yolo9000.build.instantiate_module`) is saved in every checkpoint."""

    model: torch.nn.Module
    model_config: dict[str, Any] | None = None

    def __init__(self) -> None:
        super().__init__()
        # images seen over all ranks (darknet's ``seen``: its prior-matching term stops after 12,800); a buffer, so
        # it is saved in checkpoints and restored on resume
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))

    def count_seen(self, batch_size: int) -> int:
        """Add this step's images of all ranks to ``seen`` (darknet counts before the forward pass); returns it."""
        world = self.trainer.world_size if self._trainer is not None else 1
        self.seen += batch_size * world
        return int(self.seen)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """uint8 images (cheap to collate and copy) -> float in [0, 1], on the device."""
        if isinstance(batch, dict) and batch["images"].dtype == torch.uint8:
            batch["images"] = batch["images"].float().div_(255.0)
        return batch

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["yolo9000_model_config"] = self.model_config

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.model_config = checkpoint.get("yolo9000_model_config", self.model_config)

    def configure_optimizers(self) -> Any:
        total = int(self.trainer.estimated_stepping_batches) if self._trainer is not None else 1
        return darknet_optimization(self.model, self.hparams, total)
