"""The registry of pretrained weights, named ``arch.tag`` (as in timm).

Each entry says where the file lives, how to check it (sha256, size), under which licence it may be used, and
the preprocessing the network expects. Upstream pages publish no hashes; these come from independent package
recipes and model lists and are checked on every download.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import WeightsError

# how face crops are framed: the FFHQ landmark fit, or a square around the detector's box
ALIGNS = ("landmarks", "box")


@dataclass(frozen=True)
class Preprocessing:
    """What a network expects of its input.

    Attributes:
        size: square input side in pixels (None = any).
        value_range: the range pixels are scaled to before normalising, e.g. (-1, 1) or (0, 1).
        colour: "rgb", "bgr" or "gray".
        mean, std: per-channel normalisation applied after scaling (None = none).
        labels: class order of the output, where the network classifies.
        crop: fraction of the input's side kept, centred, before resizing (as timm's ``crop_pct``).
        align: how the face crops the weights were trained on were framed: ``landmarks`` (FFHQ 5-point template:
            eye line level, fixed eye distance; a box crop where a face has no landmarks) or ``box`` (a square of
            the detector's box with ``margin``); None = not recorded, the stream's own choice (``landmarks``).
        margin: border around the box of a box crop, per side, as a fraction of its longer edge (None = the
            stream's ``align.margin``).
    """

    size: int | None = None
    value_range: tuple[float, float] = (0.0, 1.0)
    colour: str = "rgb"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    labels: tuple[str, ...] | None = None
    crop: float = 1.0
    align: str | None = None
    margin: float | None = None

    def __post_init__(self) -> None:
        if self.align is not None and self.align not in ALIGNS:
            raise ValueError(f"preprocessing align must be one of {', '.join(ALIGNS)}, got {self.align!r}")
        if self.margin is not None and not self.margin >= 0:
            raise ValueError(f"preprocessing margin must be >= 0, got {self.margin!r}")


@dataclass(frozen=True)
class WeightSpec:
    name: str
    urls: tuple[str, ...]
    sha256: str
    size: int
    licence: str
    kind: str  # restorer | detector | backbone | classifier | metric
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    notes: str = ""

    @property
    def filename(self) -> str:
        return self.urls[0].rsplit("/", 1)[-1]


_FFHQ = Preprocessing(size=512, value_range=(-1.0, 1.0), colour="rgb")
_IMAGENET = Preprocessing(size=224, value_range=(0.0, 1.0), colour="rgb",
                          mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
_GH = "https://github.com"
_LPIPS_SHIFT, _LPIPS_SCALE = (-0.030, -0.088, -0.188), (0.458, 0.448, 0.450)  # LPIPS's input scaling

SPECS: tuple[WeightSpec, ...] = (
    WeightSpec("gfpgan.v1_3", (f"{_GH}/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.3.pth",),
               "c953a88f2727c85c3d9ae72e2bd4846bbaf59fe6972ad94130e23e7017524a70", 348632874, "Apache-2.0",
               "restorer", _FFHQ),
    WeightSpec("gfpgan.v1_4", (f"{_GH}/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth",),
               "e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad", 348632874, "Apache-2.0",
               "restorer", _FFHQ),
    WeightSpec("restoreformer.v1", (f"{_GH}/TencentARC/GFPGAN/releases/download/v1.3.4/RestoreFormer.pth",),
               "07404d446d62ca3d5ed38b1de09a947a1e77d46dbccec961a74d713a8f24ace0", 290785322, "Apache-2.0",
               "restorer", _FFHQ),
    WeightSpec("codeformer.v0_1", (f"{_GH}/sczhou/CodeFormer/releases/download/v0.1.0/codeformer.pth",),
               "1009e537e0c2a07d4cabce6355f53cb66767cd4b4297ec7a4a64ca4b8a5684b7", 376637898,
               "S-Lab-1.0 (non-commercial)", "restorer", _FFHQ,
               notes="S-Lab License 1.0: research and non-commercial use only."),
    WeightSpec("retinaface.resnet50",
               (f"{_GH}/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth",),
               "6d1de9c2944f2ccddca5f5e010ea5ae64a39845a86311af6fdf30841b0a5a16d", 109497761, "MIT", "detector",
               Preprocessing(colour="bgr", value_range=(0.0, 255.0), mean=(104.0, 117.0, 123.0))),
    WeightSpec("retinaface.mobilenet0_25",
               (f"{_GH}/xinntao/facexlib/releases/download/v0.1.0/detection_mobilenet0.25_Final.pth",),
               "2979b33ffafda5d74b6948cd7a5b9a7a62f62b949cef24e95fd15d2883a65220", 1789735, "MIT", "detector",
               Preprocessing(colour="bgr", value_range=(0.0, 255.0), mean=(104.0, 117.0, 123.0))),
    WeightSpec("yunet.2023mar",
               (f"{_GH}/opencv/opencv_zoo/raw/main/models/face_detection_yunet/face_detection_yunet_2023mar.onnx",),
               "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4", 232589, "MIT", "detector",
               Preprocessing(colour="bgr", value_range=(0.0, 255.0))),
    WeightSpec("resnet18.imagenet", ("https://download.pytorch.org/models/resnet18-f37072fd.pth",),
               "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec", 46830571, "BSD-3-Clause",
               "backbone", _IMAGENET),
    WeightSpec("resnet50.imagenet", ("https://download.pytorch.org/models/resnet50-0676ba61.pth",),
               "0676ba61b6795bbe1773cffd859882e5e297624d384b6993f7c9e683e722fb8a", 102530333, "BSD-3-Clause",
               "backbone", _IMAGENET),
    WeightSpec("vgg16.imagenet", ("https://download.pytorch.org/models/vgg16-397923af.pth",),
               "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0", 553433881, "BSD-3-Clause",
               "backbone", _IMAGENET),
    WeightSpec("vgg19.imagenet", ("https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",),
               "dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44", 574673361, "BSD-3-Clause",
               "backbone", _IMAGENET),
    # Quality metrics of the study (fersr_stream.quality): LPIPS v0.1 = AlexNet's ImageNet features + a learnt head;
    # identity similarity = FaceNet embeddings.
    WeightSpec("alexnet.imagenet", ("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",),
               "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02", 244408911, "BSD-3-Clause",
               "backbone", Preprocessing(value_range=(-1.0, 1.0), mean=_LPIPS_SHIFT, std=_LPIPS_SCALE),
               notes="torchvision's AlexNet; the backbone of the lpips metric (its preprocessing is LPIPS's)."),
    WeightSpec("lpips.alex_v0_1", (f"{_GH}/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth",),
               "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0", 6009, "BSD-2-Clause", "metric",
               Preprocessing(value_range=(-1.0, 1.0), mean=_LPIPS_SHIFT, std=_LPIPS_SCALE),
               notes="LPIPS v0.1 linear head for AlexNet (the file inside the lpips 0.1.4 wheel); needs "
                     "alexnet.imagenet."),
    WeightSpec("inception_resnet_v1.vggface2",
               (f"{_GH}/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",),
               "281cebca8662831adb987a874bdcb36e73f5b1c6dc5ee5878f305e985625d99b", 111898327, "MIT", "metric",
               Preprocessing(size=160, value_range=(0.0, 255.0), mean=(127.5,) * 3, std=(128.0,) * 3),
               notes="facenet-pytorch's FaceNet (VGGFace2); the identity metric's embeddings."),
    WeightSpec("emotion.mini_xception_fer2013",
               ("https://raw.githubusercontent.com/oarriaga/face_classification/"
                "b861d21b0e76ca5514cdeb5b56a689b7318584f4/trained_models/emotion_models/"
                "fer2013_mini_XCEPTION.102-0.66.hdf5",),
               "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e", 872856, "MIT", "classifier",
               Preprocessing(size=64, value_range=(-1.0, 1.0), colour="gray",
                             labels=("angry", "disgusted", "afraid", "happy", "sad", "surprised", "neutral")),
               notes="Keras source of a FER2013 mini-Xception; fersr ships its own converted copy."),
)

REGISTRY: dict[str, WeightSpec] = {spec.name: spec for spec in SPECS}


def get(name: str) -> WeightSpec:
    """The spec called ``name``; an unknown name is a WeightsError listing the close ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise WeightsError(f"unknown weights {name!r}; {hint(name)}") from None


def arch(name: str) -> str:
    """The architecture part of a registry name: ``gfpgan`` for ``gfpgan.v1_4``."""
    return name.split(".", 1)[0]


def hint(name: str, architecture: str | None = None) -> str:
    """A short pointer for an unknown ``name``: the close registry names (of ``architecture`` only, when
    given), else the listing command."""
    import difflib

    names = [n for n in REGISTRY if architecture is None or arch(n) == architecture]
    close = [n for n in names if arch(n) == name] or difflib.get_close_matches(name, names, n=3, cutoff=0.4)
    return f"did you mean {', '.join(close)}?" if close else "see `fersr-models list`"
