"""YOLOv2 / YOLO9000 in PyTorch Lightning.

``from yolo9000 import Detector`` is the predict API (:mod:`yolo9000.api`), imported on first use so that
``import yolo9000`` (and ``yolo9000.darknet``, ``yolo9000.wordtree``, ...) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from yolo9000.api import Detections, Detector, UnreadableImageError

__all__ = ["Detections", "Detector", "UnreadableImageError"]

_API = frozenset(__all__)


def __getattr__(name: str) -> Any:
    if name in _API:
        from yolo9000 import api

        return getattr(api, name)
    raise AttributeError(f"module 'yolo9000' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
