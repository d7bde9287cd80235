"""Mask R-CNN's part: a mask stage on 14x14 RoIAlign features (FCN or MLP head, per-class sigmoid or
softmax-across-classes masks), added to Faster R-CNN by `faster_rcnn.build_rcnn` when `masks` is set."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from objdet.errors import ConfigError
from objdet.heads.mask_head import FCNMaskHead, MaskStage, MLPMaskHead
from objdet.roi import MultiLevelRoIPooler

if TYPE_CHECKING:
    from objdet.detectors.faster_rcnn import RCNNConfig


def mask_stage(cfg: RCNNConfig, channels: int) -> MaskStage:
    """Pooler and mask head on the RoI features (`channels` deep) the trunk gives."""
    head: FCNMaskHead | MLPMaskHead
    if cfg.mask_head == "fcn":
        head = FCNMaskHead(channels, cfg.num_classes, norm=cfg.mask_head_norm)
    elif cfg.mask_head == "mlp":
        head = MLPMaskHead(channels, cfg.mask_resolution, cfg.num_classes)
    else:
        raise ConfigError(f"unknown mask_head {cfg.mask_head!r}; choose 'fcn' or 'mlp'")
    pooler = MultiLevelRoIPooler(cfg.mask_resolution, cfg.sampling_ratio, kind=cfg.roi_pooler)
    return MaskStage(pooler, head, cfg.mask_softmax)


# Zoo defaults of the Mask R-CNN entries on top of Faster R-CNN's.
MASK: dict[str, Any] = dict(masks=True)
V2_MASK: dict[str, Any] = dict(masks=True, mask_head_norm="BN")  # torchvision's maskrcnn_resnet50_fpn_v2
