"""Synthetic scene generators for the demo and the benchmarks (not read by a training run).

- ``demo``: the bundled demo scenes (``make demo``, the tests), drawn from scikit-image's photos.
- ``objects``: the objects benchmark's scenes (real object photos pasted on real backgrounds).
- ``export``: writing scenes in the formats users have (COCO instances, VOC palette PNGs, fg masks).

``r2o_pretrain.data`` is what a training run reads; nothing there imports this package.
"""
