"""ImageNet CNNs from torchvision (ResNet-18/50, VGG-16/19) with a 7-way emotion head.

Nothing is downloaded here: the training code fetches the ImageNet weights through the weights registry
(``resnet18.imagenet`` etc.) and passes the loaded state dict to :func:`build`.
Input: (N, 3, H, W) float, normalised as ImageNet (see the registry's preprocessing); output: (N, C) logits.
"""

from __future__ import annotations

import functools

import torchvision
from torch import nn

from ..errors import WeightsError
from .checkpoint import describe_mismatch

_CONSTRUCTORS = {
    "resnet18": torchvision.models.resnet18,
    "resnet50": torchvision.models.resnet50,
    "vgg16": torchvision.models.vgg16,
    "vgg19": torchvision.models.vgg19,
}


def build(arch: str, num_classes: int = 7, backbone_state_dict: dict | None = None) -> nn.Module:
    """A torchvision classifier whose last layer is replaced by a fresh ``num_classes``-way linear layer.

    Args:
        arch: resnet18, resnet50, vgg16 or vgg19.
        num_classes: outputs of the new head.
        backbone_state_dict: an ImageNet (1000-class) state dict for ``arch``, loaded before the head is
            replaced; None leaves the network randomly initialised.
    """
    if arch not in _CONSTRUCTORS:
        raise ValueError(f"unknown torchvision arch {arch!r}; expected one of {', '.join(_CONSTRUCTORS)}")
    model = _CONSTRUCTORS[arch](weights=None)
    if backbone_state_dict is not None:
        try:
            model.load_state_dict(backbone_state_dict)
        except RuntimeError:
            raise WeightsError(f"ImageNet weights do not fit torchvision {arch} "
                               f"({describe_mismatch(model, backbone_state_dict)})") from None
    if arch.startswith("resnet"):
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    else:
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)
    return model


# the entries of fersr_stream.classify.checkpoint.ARCHITECTURES
resnet18 = functools.partial(build, "resnet18")
resnet50 = functools.partial(build, "resnet50")
vgg16 = functools.partial(build, "vgg16")
vgg19 = functools.partial(build, "vgg19")
