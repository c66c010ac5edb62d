"""Parity with the upstream implementations, run only where they are installed (the ``reference`` extra)::

    pip install -e '.[reference]'
    pytest tests/unit/enhance/test_parity.py

basicsr 1.4.2, which gfpgan requires, no longer imports with this torchvision by itself: fersr_stream.testing.reference
imports it with a stand-in for the module torchvision removed. The same tests run against a reference installed
outside the venv and put on ``PYTHONPATH`` (e.g. ``basicsr-fixed``, which changes that one import in its source).
"""

from __future__ import annotations

import importlib
import shutil
import sys

import cv2
import numpy as np
import pytest
import torch

from fersr_stream import enhance
from fersr_stream.config import DetectConfig, EnhanceConfig
from fersr_stream.crops import HostCrops
from fersr_stream.detect.retinaface import POST_NMS_TOP_K, RetinaFaceDetector, build_retinaface
from fersr_stream.testing import random_weights as rc
from fersr_stream.testing import reference

CPU = torch.device("cpu")


needs_reference = pytest.mark.skipif(not reference.installed(),
                                     reason="the official gfpgan stack is absent: pip install -e '.[reference]'")


def test_load_stands_in_for_the_module_torchvision_removed(tmp_path, monkeypatch):
    # imports as basicsr 1.4.2 does: the removed module, and a numpy setting for the whole process
    (tmp_path / "fersr_fake_basicsr.py").write_text(
        "import numpy as np\n"
        "from torchvision.transforms.functional_tensor import rgb_to_grayscale\n"
        "np.seterr(divide='ignore', invalid='ignore')\n")
    monkeypatch.syspath_prepend(tmp_path)
    numpy_errors = np.geterr()
    try:
        module = reference.load("fersr_fake_basicsr")
    finally:
        sys.modules.pop("fersr_fake_basicsr", None)
    from torchvision.transforms.functional import rgb_to_grayscale

    assert module.rgb_to_grayscale is rgb_to_grayscale
    assert np.geterr() == numpy_errors
    assert reference.REMOVED not in sys.modules  # the stand-in lived for the import only
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(reference.REMOVED)


@needs_reference
def test_gfpgan_matches_the_official_network(tmp_path, astronaut):
    reference.load("gfpgan")  # with basicsr, which needs the stand-in to import
    from basicsr.utils import img2tensor, tensor2img
    from gfpgan.archs.gfpganv1_clean_arch import GFPGANv1Clean
    from torchvision.transforms.functional import normalize

    try:
        path = rc.save_gfpgan(tmp_path / "GFPGANv1.4.pth", seed=5)
        ours = enhance.create(EnhanceConfig(name="gfpgan", weights=str(path), seed=7), CPU)
        # GFPGANer's arch="clean" network, loaded as GFPGANer loads it
        official = GFPGANv1Clean(out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None,
                                 fix_decoder=False, num_mlp=8, input_is_latent=True, different_w=True, narrow=1,
                                 sft_half=True)
        official.load_state_dict(torch.load(path, map_location="cpu")["params_ema"], strict=True)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)
    official.eval()
    # the same seeded noise maps; upstream would draw fresh noise per call (randomize_noise=True)
    official.stylegan_decoder.noises.load_state_dict(ours.model.stylegan_decoder.noises.state_dict())

    face_bgr = cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR)
    # GFPGANer.enhance(has_aligned=True, paste_back=False), step by step
    x = img2tensor(face_bgr / 255.0, bgr2rgb=True, float32=True)
    normalize(x, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), inplace=True)
    with torch.inference_mode():
        output = official(x.unsqueeze(0), return_rgb=False, randomize_noise=False)[0]
    expected = cv2.cvtColor(tensor2img(output.squeeze(0), rgb2bgr=True, min_max=(-1, 1)).astype(np.uint8),
                            cv2.COLOR_BGR2RGB)

    got = ours.enhance(HostCrops(astronaut[None])).images[0]
    diff = np.abs(got.astype(int) - expected)
    assert diff.max() <= 1 and diff.mean() < 0.01


@needs_reference
def test_retinaface_matches_facexlib(astronaut):
    from facexlib.detection.retinaface import RetinaFace as FacexlibRetinaFace

    frame = np.ascontiguousarray(astronaut[100:340, 96:416])  # 240 x 320
    torch.manual_seed(2)
    ours = build_retinaface("mobilenet0.25")
    # A random-init net's activations fade layer by layer, leaving near-tied scores that NMS may break either way;
    # BatchNorm statistics measured on the frame keep them alive, so every score differs.
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float().flip(1) - torch.tensor([104.0, 117, 123]).view(3, 1, 1)
    for module in ours.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the calibration batches
    with torch.no_grad():
        ours.train()(x)
    ours.eval()
    official = FacexlibRetinaFace(network_name="mobile0.25", device=CPU)
    official.load_state_dict(ours.state_dict(), strict=True)
    official.eval()

    threshold = 0.5
    with torch.inference_mode():
        expected = official.detect_faces(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), conf_threshold=threshold,
                                         nms_threshold=0.4, use_origin_size=True)
    detector = RetinaFaceDetector(DetectConfig(name="retinaface", score_threshold=threshold, min_face=0), CPU,
                                  net=ours)
    (faces,) = detector.detect([frame])

    assert len(expected) > 10, len(expected)
    boxes = expected[:, :4].copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, 320)  # ours are clipped to the frame
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, 240)
    kept = np.flatnonzero((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))[:POST_NMS_TOP_K]  # our cap
    assert len(faces) == len(kept)
    np.testing.assert_allclose(faces.boxes, boxes[kept], atol=1e-3)
    np.testing.assert_allclose(faces.scores, expected[kept, 4], atol=1e-5)
    np.testing.assert_allclose(faces.landmarks, expected[kept, 5:].reshape(-1, 5, 2), atol=1e-3)
