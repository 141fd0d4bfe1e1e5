"""torchvision ResNet encoders that return layer3 (c4) and layer4 (c5) feature maps.

The module's own parameters are named exactly as torchvision's (``conv1.weight``, ``layer1.0.bn1.*``,
no ``fc``), so ``encoder.state_dict()`` *is* a torchvision ResNet state dict.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models
from torchvision.models.resnet import BasicBlock, Bottleneck

from ..resnet_depths import DEPTHS

BUILDERS = {depth: getattr(models, f"resnet{depth}") for depth in DEPTHS}


def block_out_channels(block: nn.Module) -> int:
    if isinstance(block, Bottleneck):
        return block.bn3.num_features
    if isinstance(block, BasicBlock):
        return block.bn2.num_features
    raise TypeError(f"unsupported ResNet block {type(block).__name__}")


class ResNetEncoder(nn.Module):
    """x float[B,3,H,W] → (c4 float[B,C4,H/16,W/16], c5 float[B,C5,H/32,W/32])."""

    def __init__(self, depth: int = 50) -> None:
        super().__init__()
        if depth not in BUILDERS:
            raise ValueError(f"ResNet depth must be one of {sorted(BUILDERS)}, got {depth}")
        net = BUILDERS[depth](weights=None)
        self.depth = depth
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.c4_channels = block_out_channels(self.layer3[-1])
        self.c5_channels = block_out_channels(self.layer4[-1])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c4 = self.forward_c4(x)
        return c4, self.layer4(c4)

    def forward_c4(self, x: torch.Tensor) -> torch.Tensor:
        """x float[B,3,H,W] → c4 float[B,C4,H/16,W/16] (stem and layer1-3 only).

        The input is brought to the weights' memory format first, so a channels_last model gets
        channels_last activations throughout even from a strided slice such as ``views[:, 0]``.
        """
        if self.conv1.weight.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer3(self.layer2(self.layer1(x)))


def load_encoder(path: str, encoder: str = "online", allow_pickle: bool = False) -> ResNetEncoder:
    """A ResNetEncoder with the weights of any supported checkpoint (see ``r2o_pretrain.weights``)."""
    from ..weights import read_resnet_weights

    weights = read_resnet_weights(path, encoder, allow_pickle)
    net = ResNetEncoder(weights.depth)
    net.load_state_dict(weights.state, strict=True)
    return net
