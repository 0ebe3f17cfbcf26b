"""Networks: Darknet-19 and the YOLOv2 / YOLO9000 detector."""

from typing import Any

import numpy as np

STRIDE = 32  # Darknet-19's output stride: input sides are multiples of it, the output grid is input / STRIDE


def check_flags(owner: str, **flags: Any) -> None:
    """Refuse a yes / no switch given as anything but a bool (``model.net.passthrough=maybe`` reached the network as
    the string "maybe", true to Python: the job trained as with ``true``): TypeError naming ``owner`` and the key."""
    for name, value in flags.items():
        if not isinstance(value, bool | np.bool_):
            raise TypeError(f"{owner}: {name} must be true or false, got {value!r}")
