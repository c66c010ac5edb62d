"""Training and evaluation of one model on one set of face crops, resumable and DDP-ready.

Determinism is by construction, so that a killed run resumes to the same numbers: the data order, the
augmentation of every image and torch's RNG (dropout) are all derived from ``(seed, epoch)``, and the epoch
checkpoint holds the model, the optimizer and the early-stopping state. Under ``torchrun`` every process takes
its share of each epoch's order and gradients are averaged by DDP (gloo on CPU, nccl on CUDA).

Input conversion is the stream's: workers only augment and resize uint8 crops, and the batch is normalised
by :meth:`fersr_stream.classify.Classifier.preprocess`, the very code the stream runs.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from fersr_stream.classify import Classifier
from fersr_stream.classify.labels import Emotion
from fersr_stream.crops import HostCrops
from fersr_stream.weights.registry import Preprocessing

from .config import TrainConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def preprocessing(input_size: int) -> Preprocessing:
    """What the fine-tuned ImageNet CNNs expect: RGB in [0, 1], ImageNet-normalised, ``input_size`` square."""
    return Preprocessing(size=input_size, value_range=(0.0, 1.0), colour="rgb", mean=IMAGENET_MEAN,
                         std=IMAGENET_STD, labels=tuple(e.label for e in Emotion))


# ---------------------------------------------------------------------------------------------- distributed
@dataclass(frozen=True)
class Dist:
    """This process's place in a ``torchrun`` job (rank 0 of 1 when run plainly)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def init_distributed(device: torch.device) -> Dist:
    """Join the process group that ``torchrun`` describes in the environment, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size())


# --------------------------------------------------------------------------------------------------- data
def augment(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random mirror, small rotation, zoom and shift of a (S, S, 3) uint8 crop (same shape back)."""
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    s = crop.shape[0]
    angle, scale = rng.uniform(-8, 8), rng.uniform(0.92, 1.08)
    shift = rng.uniform(-0.05, 0.05, 2) * s
    m = cv2.getRotationMatrix2D((s / 2 - 0.5, s / 2 - 0.5), angle, scale)
    m[:, 2] += shift
    return cv2.warpAffine(np.ascontiguousarray(crop), m, (s, s), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)


class CropData(torch.utils.data.Dataset):
    """Crops as uint8 (size, size, 3) tensors plus labels; augmentation is a function of (seed, epoch, index)."""

    def __init__(self, crops: np.ndarray, labels: np.ndarray, size: int, augment: bool, seed: int):
        self.crops, self.labels = crops, labels
        self.size, self.augment, self.seed = size, augment, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, i: int):
        crop = np.asarray(self.crops[i])
        if self.augment:
            crop = augment(crop, np.random.default_rng([self.seed, self.epoch, i]))
        if crop.shape[0] != self.size:
            crop = cv2.resize(crop, (self.size, self.size), interpolation=cv2.INTER_AREA)  # as preprocess does
        return torch.from_numpy(np.ascontiguousarray(crop)), int(self.labels[i])


class EpochOrder(torch.utils.data.Sampler):
    """A permutation per epoch from (seed, epoch); rank r of w takes every w-th index (padded to equal length)."""

    def __init__(self, n: int, seed: int, dist_: Dist):
        self.n, self.seed, self.dist = n, seed, dist_
        self.epoch = 0

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        per_rank = math.ceil(self.n / self.dist.world)
        order = np.resize(order, per_rank * self.dist.world)  # wraps around: every rank gets as many
        return iter(order[self.dist.rank::self.dist.world].tolist())

    def __len__(self) -> int:
        return math.ceil(self.n / self.dist.world)


# ------------------------------------------------------------------------------------------------- models
def head_and_blocks(model: nn.Module, arch: str) -> tuple[nn.Module, list[nn.Module]]:
    """The new head and the body's blocks from the top down (for the progressive schedule)."""
    if arch.startswith("resnet"):
        stem = nn.ModuleList([model.conv1, model.bn1])
        return model.fc, [model.layer4, model.layer3, model.layer2, nn.ModuleList([model.layer1, stem])]
    if arch.startswith("vgg"):
        blocks, current = [], []
        for layer in model.features:
            current.append(layer)
            if isinstance(layer, nn.MaxPool2d):
                blocks.append(nn.ModuleList(current))
                current = []
        # the classifier's hidden layers count as the top block; its last linear layer is the head
        top = nn.ModuleList(list(model.classifier)[:-1])
        return model.classifier[-1], [top] + blocks[::-1]
    raise ValueError(f"no block structure known for {arch!r}")


def trainable_blocks(config: TrainConfig, epoch: int, n_blocks: int) -> int:
    """How many body blocks (from the top) train in ``epoch``: all for ``full``, a growing number for ``pipeline``."""
    if config.schedule == "full":
        return n_blocks
    if epoch < config.head_epochs:
        return 0
    return min(n_blocks, 1 + (epoch - config.head_epochs) // max(config.unfreeze_every, 1))


def set_trainable(model: nn.Module, arch: str, n_train: int) -> None:
    """Freeze all but the head and the top ``n_train`` blocks; frozen blocks also keep their BatchNorm statistics."""
    head, blocks = head_and_blocks(model, arch)
    model.train()
    for p in model.parameters():
        p.requires_grad_(False)
    for p in head.parameters():
        p.requires_grad_(True)
    for k, block in enumerate(blocks):
        block.train(k < n_train)
        for p in block.parameters():
            p.requires_grad_(k < n_train)


def learning_rate(base: float, epoch: int, epochs: int) -> float:
    """Cosine decay from ``base`` over ``epochs`` (a pure function of the epoch, so resuming needs no state)."""
    return base * 0.5 * (1.0 + math.cos(math.pi * epoch / max(epochs, 1)))


# ----------------------------------------------------------------------------------------------- training
@dataclass
class Split:
    """Crops and labels of one part of a fold."""

    crops: np.ndarray  # (N, S, S, 3) uint8
    labels: np.ndarray  # (N,) int64


@dataclass
class FitResult:
    """The selected (best validation) weights and the per-epoch history."""

    state: dict
    best_epoch: int
    best_val_acc: float
    history: list[dict] = field(default_factory=list)


def atomic_save(obj, path: Path) -> None:
    """torch.save to a temporary name beside ``path``, then rename (a kill never leaves half a file)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def evaluate(classifier: Classifier, split: Split) -> tuple[float, float, np.ndarray]:
    """(accuracy, mean cross-entropy, (N, 7) probabilities) of ``classifier`` on ``split`` (in eval mode)."""
    classifier.model.eval()
    probs = classifier.classify(HostCrops(np.ascontiguousarray(split.crops)))
    p = np.clip(probs[np.arange(len(split.labels)), split.labels], 1e-12, 1.0)
    return float((probs.argmax(1) == split.labels).mean()), float(-np.log(p).mean()), probs


def fit(model: nn.Module, arch: str, train: Split, val: Split, config: TrainConfig, device: torch.device,
        state_path: Path, dist_: Dist = Dist(), desc: str = "train",
        on_epoch_end: Callable[[int], None] | None = None, progress: bool = True, seed: int = 0) -> FitResult:
    """Fine-tune ``model`` on ``train``, pick the epoch with the best ``val`` accuracy, stop early on patience.

    Args:
        model: a freshly built network (its weights are replaced by the checkpoint's when resuming).
        arch: resnet18 | resnet50 | vgg16 | vgg19 (for the progressive schedule's blocks).
        state_path: the epoch checkpoint; resumed from when present, written atomically after every epoch.
        on_epoch_end: called with the finished epoch after its checkpoint is written (tests use it to kill).
        progress: show a progress bar (on rank 0).
        seed: the training seed: data order, augmentation and dropout are functions of it and the epoch.

    Returns:
        The best epoch's weights (CPU tensors), that epoch and its validation accuracy, and the history.
    """
    if not len(train.labels) or not len(val.labels):
        raise ValueError(f"fit needs training and validation faces, got {len(train.labels)} and {len(val.labels)}")
    model.to(device)
    optimizer = _optimizer(model, arch, config)
    start, history, best, bad_epochs = _resume(state_path, model, optimizer)
    data = CropData(train.crops, train.labels, config.input_size, config.augment, seed)
    order = EpochOrder(len(data), seed, dist_)
    per_rank_batch = max(1, config.batch // dist_.world)
    loader = torch.utils.data.DataLoader(data, batch_size=per_rank_batch, sampler=order,
                                         num_workers=config.workers, drop_last=False)
    judge = Classifier(model, arch, tuple(Emotion), preprocessing(config.input_size), device, batch=64)
    _, blocks = head_and_blocks(model, arch)
    for epoch in range(start, config.epochs):
        if config.patience and bad_epochs >= config.patience:
            break
        torch.manual_seed(seed * 100003 + epoch)  # dropout, reproducible per epoch
        data.epoch = order.epoch = epoch
        _schedule(model, arch, optimizer, config, epoch, len(blocks))
        net = nn.parallel.DistributedDataParallel(model) if dist_.world > 1 else model
        bar = tqdm(loader, desc=f"{desc} epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False,
                   disable=not (progress and dist_.main))
        t0 = time.perf_counter()
        trained = _train_epoch(net, bar, judge, optimizer, device)
        val_acc, val_loss = _validate(judge, val, model, dist_, device)
        record = {"epoch": epoch, "train_loss": trained["loss"], "train_acc": trained["acc"], "val_acc": val_acc,
                  "val_loss": val_loss, "lr": optimizer.param_groups[0]["lr"],
                  "images_per_s": trained["images_per_s"] * dist_.world, "data_wait": trained["data_wait"],
                  "seconds": time.perf_counter() - t0}
        history.append(record)
        if best is None or (val_acc, -val_loss) > (best["val_acc"], -best["val_loss"]):
            best = {"epoch": epoch, "val_acc": val_acc, "val_loss": val_loss,
                    "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
            bad_epochs = 0
        else:
            bad_epochs += 1
        if dist_.main:
            atomic_save({"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "history": history, "best": best, "bad_epochs": bad_epochs}, state_path)
        dist_.barrier()
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    if best is None:
        raise RuntimeError(f"{state_path}: no epoch was trained (epochs={config.epochs})")
    return FitResult(best["state"], best["epoch"], best["val_acc"], history)


def _schedule(model: nn.Module, arch: str, optimizer, config: TrainConfig, epoch: int, blocks: int) -> None:
    """The epoch's trainable blocks (the progressive schedule) and learning rates (each group's from its base)."""
    set_trainable(model, arch, trainable_blocks(config, epoch, blocks))
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(group["base_lr"], epoch, config.epochs)


def _optimizer(model: nn.Module, arch: str, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with the head at ``config.head_lr`` and the rest at ``config.lr`` (each group's ``base_lr``)."""
    head, _ = head_and_blocks(model, arch)
    head_ids = {id(p) for p in head.parameters()}
    return torch.optim.AdamW([
        {"params": [p for p in model.parameters() if id(p) not in head_ids], "base_lr": config.lr},
        {"params": list(head.parameters()), "base_lr": config.head_lr},
    ], lr=config.lr, weight_decay=config.weight_decay)


def _resume(state_path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[int, list, dict, int]:
    """(first epoch to run, history, best so far, epochs without improvement), from the epoch checkpoint when there
    is one (its model and optimizer states are loaded), else from the start."""
    if not state_path.is_file():
        return 0, [], None, 0
    saved = torch.load(state_path, map_location="cpu", weights_only=True)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    return saved["epoch"] + 1, saved["history"], saved["best"], saved["bad_epochs"]


def _train_epoch(net: nn.Module, batches, judge: Classifier, optimizer, device: torch.device) -> dict:
    """One pass over ``batches`` of (images, labels): its mean loss, accuracy, this rank's images per second and
    the share of the time spent waiting for data."""
    loss_fn = nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    wait = seen = correct = loss_sum = 0.0
    tick = time.perf_counter()
    for images, labels in batches:
        wait += time.perf_counter() - tick
        x = judge.preprocess(HostCrops(images.numpy()))
        y = labels.to(device)
        logits = net(x)
        loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(y)
        correct += float((logits.argmax(1) == y).sum())
        loss_sum += float(loss.detach()) * len(y)
        tick = time.perf_counter()
    train_s = time.perf_counter() - t0
    return {"loss": loss_sum / max(seen, 1), "acc": correct / max(seen, 1),
            "images_per_s": seen / max(train_s, 1e-9), "data_wait": wait / max(train_s, 1e-9)}


def _validate(judge: Classifier, val: Split, model: nn.Module, dist_: Dist, device: torch.device
              ) -> tuple[float, float]:
    """Validation accuracy and loss, the same on every rank (rank 0's)."""
    if dist_.world > 1:
        # Ranks must agree on the best epoch and on stopping; BatchNorm statistics are per rank, so take
        # rank 0's model and its validation numbers.
        for buffer in model.buffers():
            dist.broadcast(buffer, 0)
    val_acc, val_loss, _ = evaluate(judge, val)
    if dist_.world > 1:
        numbers = torch.tensor([val_acc, val_loss], dtype=torch.float64, device=device)
        dist.broadcast(numbers, 0)
        val_acc, val_loss = float(numbers[0]), float(numbers[1])
    return val_acc, val_loss


# ------------------------------------------------------------------------------------------- model set-up
def imagenet_weights(arch: str) -> Path:
    """The cached ImageNet file for ``arch`` (downloaded if allowed); a missing file is a WeightsError that says
    where to put it and that ``--no-pretrained`` trains from scratch instead."""
    from fersr_stream.errors import WeightsError
    from fersr_stream.weights import store

    try:
        return store.ensure(f"{arch}.imagenet", download=True)
    except WeightsError as exc:
        raise WeightsError(f"{exc}; or train from scratch with --no-pretrained") from None


def build_model(arch: str, pretrained: bool) -> nn.Module:
    """A 7-way ``arch`` network: ImageNet body (through the weights registry) or random when not ``pretrained``."""
    from fersr_stream.classify import torchvision_cnn

    state = torch.load(imagenet_weights(arch), map_location="cpu", weights_only=True) if pretrained else None
    return torchvision_cnn.build(arch, num_classes=len(Emotion), backbone_state_dict=state)
