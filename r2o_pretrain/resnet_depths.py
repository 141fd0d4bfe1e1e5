"""The ResNet depths this project supports, in one table: depth → blocks in layer1..4 and block type.

Used by the config check, the encoder builder, the converter's depth inference and the detectron2
backbone (which widens stage 2 for the BasicBlock nets).
"""

from __future__ import annotations

BLOCKS_PER_STAGE: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}
DEPTHS: tuple[int, ...] = tuple(BLOCKS_PER_STAGE)
BASIC_BLOCK_DEPTHS: tuple[int, ...] = (18, 34)  # the rest use Bottleneck blocks (with conv3)
