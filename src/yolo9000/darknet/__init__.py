"""darknet interop as a library: ``.cfg`` parsing, network building, ``.weights`` I/O, region metadata and
parameter counts. Imports :mod:`yolo9000.models`, torch and numpy only (no Lightning, no Hydra, no ``conf/``).

- :mod:`~yolo9000.darknet.cfg`: :func:`parse_cfg` reads a darknet cfg into sections (``type``, ``options``, and
  where each came from); :func:`layer_specs` infers shapes; :func:`count_params`; :func:`region_meta` (data files a
  cfg names are resolved relative to it and to the caller's ``search`` folders).
- :mod:`~yolo9000.darknet.net`: :class:`DarknetNet`, the generic network of any supported cfg (yolov2-tiny,
  residual ``[shortcut]`` networks, ``[upsample]``, ``[connected]`` classifiers), built from
  :mod:`yolo9000.models.layers`.
- :mod:`~yolo9000.darknet.native`: :func:`match_native` recognises Darknet-19 classifiers and YOLOv2 detectors
  (built as this project's modules with ``bn_style="darknet"``); :func:`build_darknet`, :func:`load_darknet`
  (build + load: (B, 3, H, W) images in [0, 1] -> the raw last-conv output (B, A * (5 + C), H / 32, W / 32) for
  detectors, (B, classes) logits for classifiers); :func:`native_cfg_text` writes a native module's cfg.
- :mod:`~yolo9000.darknet.weights`: :func:`load_weights` / :func:`save_weights` read and write ``.weights``
  (partial ``.conv.N`` files too; values copied, never transformed, so a round trip is bit-exact);
  :func:`darknet_convs` gives the conv order.

Checkpoint conversion (cfg + weights <-> a Lightning checkpoint) is application code: :mod:`yolo9000.checkpoints`.
"""

from __future__ import annotations

from yolo9000.darknet.cfg import (
    SUPPORTED,
    ConvLoad,
    LayerSpec,
    RegionMeta,
    conv_load_options,
    count_params,
    detector_cfg_text,
    fixed_input_size,
    layer_specs,
    net_augment_options,
    net_training_options,
    option,
    option_list,
    parse_cfg,
    parse_cfg_text,
    read_text,
    region_from_section,
    region_lines,
    region_meta,
    resolve_data_file,
)
from yolo9000.darknet.native import (
    NativeSpec,
    build_darknet,
    build_native,
    darknet_detector,
    load_darknet,
    match_native,
    native_cfg_text,
    native_net_config,
)
from yolo9000.darknet.net import ConvPair, DarknetNet, darknet_net_from_text
from yolo9000.darknet.weights import WeightsInfo, darknet_convs, load_weights, read_header, save_weights

__all__ = [
    "SUPPORTED",
    "ConvLoad",
    "ConvPair",
    "DarknetNet",
    "LayerSpec",
    "NativeSpec",
    "RegionMeta",
    "WeightsInfo",
    "build_darknet",
    "build_native",
    "conv_load_options",
    "count_params",
    "detector_cfg_text",
    "darknet_convs",
    "darknet_detector",
    "darknet_net_from_text",
    "fixed_input_size",
    "layer_specs",
    "load_darknet",
    "load_weights",
    "match_native",
    "native_cfg_text",
    "native_net_config",
    "net_augment_options",
    "net_training_options",
    "option",
    "option_list",
    "parse_cfg",
    "parse_cfg_text",
    "read_text",
    "read_header",
    "region_from_section",
    "region_lines",
    "region_meta",
    "resolve_data_file",
    "save_weights",
]
