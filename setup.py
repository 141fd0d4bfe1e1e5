"""r2o: R2O (Region-to-Object) pretraining and its transfer to detectron2 and mmsegmentation.

The full pinned stack (torch, mmcv with compiled ops, detectron2, ...) is installed by
``make setup`` (scripts/setup.sh); ``pip install -e .`` alone installs the three packages.
"""

from setuptools import find_packages, setup

setup(
    name="r2o",
    version="0.1.0",
    description="R2O region-to-object representation learning: pretraining, weight conversion, "
    "detectron2 and mmsegmentation plugins",
    long_description=open("README.md").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["r2o_pretrain*", "r2o_d2*", "r2o_mmseg*"]),
    package_data={"r2o_d2": ["configs/*.yaml"]},
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "numpy",
        "pillow",
        "scikit-image",
        "pyyaml",
        "tqdm",
        "timm",
        "tensorboard",
    ],
    extras_require={
        "d2": ["pycocotools", "fvcore", "detectron2"],
        "mmseg": ["mmengine==0.10.7", "mmcv==2.1.0", "mmsegmentation==1.2.2", "openmim", "cityscapesscripts"],
        "dev": ["pytest", "ruff"],
    },
)
