"""Quality metrics: PSNR and SSIM against scikit-image; the LPIPS and FaceNet ports against the lpips and
facenet-pytorch packages with identical random weights, read from files in the upstream checkpoint layouts."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from fersr_stream.errors import ConfigError, WeightsError
from fersr_stream.quality import METRICS, identity, lpips
from fersr_stream.testing import random_weights


def _pairs(n=3, side=40, seed=0):
    """HR-like faces and degraded copies (blurred, noisy), (n, side, side, 3) uint8 RGB."""
    rng = np.random.default_rng(seed)
    hr = np.stack([cv2.GaussianBlur(f, (0, 0), 1.0) for f in rng.integers(0, 256, (n, side, side, 3), np.uint8)])
    low = np.stack([cv2.resize(cv2.resize(f, (side // 4, side // 4), interpolation=cv2.INTER_AREA), (side, side))
                    for f in hr])
    noisy = np.clip(low.astype(int) + rng.integers(-20, 21, low.shape), 0, 255).astype(np.uint8)
    return hr, noisy


def test_metrics_are_registered_once():
    assert METRICS.names() == ("psnr", "ssim", "lpips", "identity")
    assert METRICS.get("lpips").weights == ("alexnet.imagenet", "lpips.alex_v0_1")
    assert METRICS.get("identity").weights == ("inception_resnet_v1.vggface2",)
    with pytest.raises(ConfigError, match="choose one of: psnr, ssim"):
        METRICS.get("fid")


@pytest.mark.parametrize("side", [16, 40, 64])
def test_psnr_and_ssim_match_scikit_image(side):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    hr, low = _pairs(side=side)
    psnr = METRICS.get("psnr")()(low, hr)
    ssim = METRICS.get("ssim")()(low, hr)
    for i in range(len(hr)):
        assert psnr[i] == pytest.approx(peak_signal_noise_ratio(hr[i], low[i], data_range=255), rel=1e-12)
        expected = structural_similarity(hr[i], low[i], data_range=255, channel_axis=-1, gaussian_weights=True,
                                         sigma=1.5, use_sample_covariance=False)
        assert ssim[i] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert 0 < ssim.max() < 1 and np.isinf(METRICS.get("psnr")()(hr, hr)).all()
    assert METRICS.get("ssim")()(hr, hr) == pytest.approx(1.0)


def test_shapes_are_checked():
    hr, low = _pairs()
    with pytest.raises(ValueError, match=r"\(N, S, S, 3\)"):
        METRICS.get("psnr")()(low[:2], hr)
    with pytest.raises(ValueError, match="at least 11 px"):
        METRICS.get("ssim")()(low[:, :8, :8], hr[:, :8, :8])


@pytest.fixture(scope="module")
def lpips_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lpips")
    return (random_weights.save_alexnet(folder / "alexnet-owt-7be5be79.pth", seed=3),
            random_weights.save_lpips_head(folder / "alex.pth", seed=4))


def test_lpips_port_matches_the_lpips_package(lpips_files):
    package = pytest.importorskip("lpips", reason="the lpips package (pip install lpips==0.1.4) is the reference")
    backbone, head = lpips_files
    ours = lpips.LPIPSNet().load_files(backbone, head)
    theirs = package.LPIPS(net="alex", pretrained=False, pnet_rand=True, verbose=False).eval()
    body = torch.load(backbone, weights_only=True)
    slices = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}  # features.N -> lpips' net.slice<k>.N
    state = {f"net.slice{slices[int(k.split('.')[1])]}.{k.split('.', 1)[1]}": v for k, v in body.items()}
    state.update(torch.load(head, weights_only=True))
    theirs.load_state_dict(state, strict=False)
    unset = {k for k in theirs.state_dict() if not k.startswith(("scaling_layer.", "lins."))} - set(state)
    assert not unset  # every weight set ('lins.k' are aliases of 'lin<k>')
    x, y = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(ours(x, y), theirs(x, y).flatten(), rtol=1e-5, atol=1e-7)
        assert ours(x, y).min() > 0 and torch.allclose(ours(x, x), torch.zeros(2), atol=1e-7)


def test_lpips_metric_on_faces(lpips_files):
    network = lpips.LPIPSNet().load_files(*lpips_files)
    metric = lpips.LPIPS("cpu", network)
    hr, low = _pairs(side=24)  # below AlexNet's 32 px minimum: enlarged first
    far = metric(low, hr)
    assert far.shape == (3,) and (far > 0).all() and metric(hr, hr) == pytest.approx(0, abs=1e-6)
    assert metric.higher_is_better is False


def test_lpips_reads_torchvisions_layout_and_refuses_another_head(tmp_path, lpips_files):
    backbone, head = lpips_files
    state = torch.load(backbone, weights_only=True)
    state["classifier.1.weight"] = torch.zeros(4, 9216)  # torchvision's classifier keys are ignored
    torch.save(state, tmp_path / "alexnet.pth")
    lpips.LPIPSNet().load_files(tmp_path / "alexnet.pth", head)
    torch.save({"lin0.weight": torch.zeros(1, 64, 1, 1)}, tmp_path / "vgg.pth")
    with pytest.raises(WeightsError, match="not an LPIPS v0.1 head"):
        lpips.LPIPSNet().load_files(backbone, tmp_path / "vgg.pth")


@pytest.fixture(scope="module")
def facenet_file(tmp_path_factory):
    return random_weights.save_inception_resnet_v1(tmp_path_factory.mktemp("facenet") / "20180402-114759-vggface2.pt")


def test_inception_resnet_v1_port_matches_facenet_pytorch(facenet_file):
    facenet = pytest.importorskip("facenet_pytorch", reason="facenet-pytorch (pip install --no-deps "
                                  "facenet-pytorch==2.6.0) is the reference")
    theirs = facenet.InceptionResnetV1(classify=True, num_classes=identity.CLASSES)
    theirs.load_state_dict(torch.load(facenet_file, weights_only=True))  # strict: the layout is theirs
    theirs.classify = False
    theirs.eval()
    ours = identity.InceptionResnetV1().load_file(facenet_file)
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        a, b = ours(x), theirs(x)
    assert a.shape == (2, 512) and torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    assert torch.allclose(a.norm(dim=1), torch.ones(2))


def test_identity_metric(facenet_file):
    metric = identity.Identity("cpu", identity.InceptionResnetV1().load_file(facenet_file))
    hr, low = _pairs(side=64)
    same, degraded = metric(hr, hr), metric(low, hr)
    # random weights map every face near one embedding: only the identical pair is exactly 1
    assert same == pytest.approx(np.ones(3), abs=1e-6) and (degraded < same.min()).all() and (degraded > -1).all()
