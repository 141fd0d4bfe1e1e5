"""ResNet parameter names: torchvision ↔ detectron2, the official R2O layout, depth from block counts."""

from __future__ import annotations

import re

import torch

from ..resnet_depths import BLOCKS_PER_STAGE

# torchvision layer -> detectron2 stage
_D2_STAGE = {"layer1": "res2", "layer2": "res3", "layer3": "res4", "layer4": "res5"}
_TV_STAGE = {v: k for k, v in _D2_STAGE.items()}
# The official R2O encoder is nn.Sequential(*list(resnet.children())[:-2]):
# 0 conv1, 1 bn1, 2 relu, 3 maxpool, 4-7 layer1-4.
OFFICIAL_CHILDREN = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}


def torchvision_to_detectron2(key: str) -> str:
    """``layer1.0.bn2.running_mean`` → ``res2.0.conv2.norm.running_mean`` (names as in d2's ResNet)."""
    if key.startswith("conv1."):
        return "stem." + key
    if key.startswith("bn1."):
        return "stem.conv1.norm." + key[len("bn1.") :]
    m = re.match(r"(layer[1-4])\.(\d+)\.(.+)$", key)
    if not m:
        raise KeyError(f"'{key}' is not a torchvision ResNet backbone key")
    stage, block, rest = _D2_STAGE[m.group(1)], m.group(2), m.group(3)
    rest = re.sub(r"^bn(\d)\.", r"conv\1.norm.", rest)
    rest = re.sub(r"^downsample\.0\.", "shortcut.", rest)
    rest = re.sub(r"^downsample\.1\.", "shortcut.norm.", rest)
    return f"{stage}.{block}.{rest}"


def detectron2_to_torchvision(key: str) -> str:
    """The inverse of ``torchvision_to_detectron2``."""
    if key.startswith("stem.conv1.norm."):
        return "bn1." + key[len("stem.conv1.norm.") :]
    if key.startswith("stem.conv1."):
        return key[len("stem.") :]
    m = re.match(r"(res[2-5])\.(\d+)\.(.+)$", key)
    if not m:
        raise KeyError(f"'{key}' is not a detectron2 ResNet key")
    stage, block, rest = _TV_STAGE[m.group(1)], m.group(2), m.group(3)
    rest = re.sub(r"^conv(\d)\.norm\.", r"bn\1.", rest)
    rest = re.sub(r"^shortcut\.norm\.", "downsample.1.", rest)
    rest = re.sub(r"^shortcut\.", "downsample.0.", rest)
    return f"{stage}.{block}.{rest}"


def official_to_torchvision(key: str) -> str:
    """``encoder.4.0.conv1.weight`` (after the network prefix) → ``layer1.0.conv1.weight``."""
    m = re.match(r"encoder\.(\d+)\.(.+)$", key)
    if not m or m.group(1) not in OFFICIAL_CHILDREN:
        raise KeyError(f"'{key}' is not an official R2O encoder key")
    return f"{OFFICIAL_CHILDREN[m.group(1)]}.{m.group(2)}"


def infer_depth(state: dict[str, torch.Tensor]) -> int:
    """Depth of a torchvision-keyed ResNet state dict, from its block counts and block type."""
    counts = []
    for i in range(1, 5):
        blocks = {int(k.split(".")[1]) for k in state if k.startswith(f"layer{i}.")}
        counts.append(max(blocks) + 1 if blocks else 0)
    counts_t = tuple(counts)
    bottleneck = any(k.endswith("conv3.weight") for k in state)
    # block counts of layer1..4 → depth; 34 and 50 share counts (Bottleneck blocks have conv3)
    table = {blocks: d for d, blocks in BLOCKS_PER_STAGE.items()}
    table[BLOCKS_PER_STAGE[50]] = 50 if bottleneck else 34
    if counts_t in table:
        return table[counts_t]
    # blocks missing from a file: the smallest ResNet that has every block present, so that the
    # caller's key-by-key report names exactly what is missing
    candidates = [
        (sum(c), d) for c, d in table.items() if all(a >= b for a, b in zip(c, counts_t)) and (d >= 50) == bottleneck
    ]
    if candidates and any(counts_t):
        return min(candidates)[1]
    raise KeyError(f"block counts {counts_t} of layer1-4 match no ResNet-18/34/50/101/152")
