"""Training loop: a killed run resumes to identical numbers; progressive unfreezing; augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fersr_stream.classify import checkpoint, load
from fersr_stream.classify.labels import Emotion
from fersr_stream.crops import HostCrops
from training import engine, synthetic
from training.config import TrainConfig


@pytest.fixture(scope="module")
def faces():
    """(42, 32, 32, 3) uint8 synthetic faces (3 identities x 7 emotions x 2 sessions) and their labels."""
    crops, labels = [], []
    for pid in ("F01", "M01", "F02"):
        identity = synthetic.identity(pid, 0)
        for session in "AB":
            for k, code in enumerate(synthetic.EXPRESSIONS):
                image = synthetic.draw(identity, synthetic.EXPRESSIONS[code], 0.0, session, 64, 87)
                crops.append(np.ascontiguousarray(image[22:54, 16:48]))
                labels.append(k)
    return np.stack(crops), np.array(labels, np.int64)


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: faster on a busy 2-core machine, and restored for later tests."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _config(**kw) -> TrainConfig:
    base = dict(models=("resnet18",), pretrained=False, input_size=32, epochs=3, batch=8, lr=3e-3, head_lr=3e-3,
                patience=0, workers=0)
    return TrainConfig(**{**base, **kw})


def _fit(faces, tmp_path, config, on_epoch_end=None):
    crops, labels = faces
    train = engine.Split(crops[:28], labels[:28])
    val = engine.Split(crops[28:], labels[28:])
    torch.manual_seed(0)
    model = engine.build_model("resnet18", pretrained=False)
    return engine.fit(model, "resnet18", train, val, config, torch.device("cpu"), tmp_path / "state.pt",
                      on_epoch_end=on_epoch_end, progress=False, seed=3)


class Killed(Exception):
    pass


def test_killed_run_resumes_to_the_same_numbers(faces, tmp_path):
    config = _config(epochs=2)
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
    whole = _fit(faces, tmp_path / "a", config)

    def kill(epoch):
        if epoch == 0:
            raise Killed

    with pytest.raises(Killed):
        _fit(faces, tmp_path / "b", config, on_epoch_end=kill)
    assert (tmp_path / "b" / "state.pt").is_file()
    resumed = _fit(faces, tmp_path / "b", config)
    assert [h["epoch"] for h in resumed.history] == [0, 1]
    assert [h["val_acc"] for h in resumed.history] == [h["val_acc"] for h in whole.history]
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in whole.history]
    assert resumed.best_epoch == whole.best_epoch
    for key, value in whole.state.items():
        assert torch.equal(value, resumed.state[key]), key
    assert not list((tmp_path / "b").glob("*.tmp"))


def test_exported_model_loads_in_the_stream_and_agrees(faces, tmp_path):
    """The checkpoint the study writes is what ``fersr-stream --classifier`` loads, with the same outputs."""
    result = _fit(faces, tmp_path, _config(epochs=1))
    torch.manual_seed(0)
    model = engine.build_model("resnet18", pretrained=False)
    model.load_state_dict(result.state)
    path = checkpoint.save_checkpoint(tmp_path / "m.safetensors", model, "resnet18", tuple(Emotion),
                                      engine.preprocessing(32), source="test")
    crops, labels = faces
    stream = load(path, "cpu").classify(HostCrops(crops))
    from fersr_stream.classify import Classifier

    direct = Classifier(model, "resnet18", tuple(Emotion), engine.preprocessing(32), torch.device("cpu"))
    acc, _, probs = engine.evaluate(direct, engine.Split(crops, labels))
    np.testing.assert_allclose(stream, probs, atol=1e-5)


def test_progressive_schedule_unfreezes_from_the_top():
    config = _config(schedule="pipeline", head_epochs=2, unfreeze_every=1, epochs=8)
    assert [engine.trainable_blocks(config, e, 4) for e in range(8)] == [0, 0, 1, 2, 3, 4, 4, 4]
    assert engine.trainable_blocks(_config(), 0, 4) == 4
    model = engine.build_model("resnet18", pretrained=False)
    engine.set_trainable(model, "resnet18", 1)
    assert all(p.requires_grad for p in model.fc.parameters())
    assert all(p.requires_grad for p in model.layer4.parameters())
    assert not any(p.requires_grad for p in model.layer3.parameters())
    assert not any(p.requires_grad for p in model.conv1.parameters())
    assert model.layer4.training and not model.layer3.training and not model.bn1.training


def test_vgg_blocks_split_at_pooling():
    from fersr_stream.classify import torchvision_cnn

    with torch.device("meta"):
        model = torchvision_cnn.build("vgg16", 7)
    head, blocks = engine.head_and_blocks(model, "vgg16")
    assert head is model.classifier[-1]
    assert len(blocks) == 6  # classifier's hidden layers + 5 conv blocks
    assert isinstance(blocks[1][-1], torch.nn.MaxPool2d)
    n_params = sum(p.numel() for b in blocks for p in b.parameters()) + sum(p.numel() for p in head.parameters())
    assert n_params == sum(p.numel() for p in model.parameters())


def test_augment_is_reproducible_and_keeps_shape(faces):
    crop = faces[0][0]
    a = engine.augment(crop, np.random.default_rng([1, 2, 3]))
    b = engine.augment(crop, np.random.default_rng([1, 2, 3]))
    c = engine.augment(crop, np.random.default_rng([1, 2, 4]))
    assert a.shape == crop.shape and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_epoch_order_splits_ranks_evenly():
    orders = []
    for rank in range(2):
        sampler = engine.EpochOrder(7, seed=1, dist_=engine.Dist(rank, 2))
        sampler.epoch = 3
        orders.append(list(sampler))
    assert len(orders[0]) == len(orders[1]) == 4
    assert set(orders[0]) | set(orders[1]) == set(range(7))
    single = engine.EpochOrder(7, seed=1, dist_=engine.Dist())
    single.epoch = 4
    assert sorted(single) == list(range(7)) and list(single) != orders[0] + orders[1]


def test_missing_imagenet_weights_name_the_fix(monkeypatch, tmp_path):
    from fersr_stream.errors import WeightsError

    monkeypatch.setenv("FERSR_HOME", str(tmp_path))
    monkeypatch.setenv("FERSR_OFFLINE", "1")
    with pytest.raises(WeightsError) as info:
        engine.imagenet_weights("resnet18")
    message = str(info.value)
    assert "resnet18.imagenet" in message and "--no-pretrained" in message and str(tmp_path) in message
