"""Random-init checkpoints in the upstream file layouts (restorers; the quality metrics' AlexNet, LPIPS head and
FaceNet), for offline tests and benchmarks (no downloads).

Each ``save_*`` builds the network with spandrel's architecture class, seeds its initialisation, and saves
``{"params_ema": state_dict}`` -- the layout of GFPGANv1.4.pth, codeformer.pth and RestoreFormer.pth -- so the
files go through the same unwrap + spandrel detection as the real ones.

Sizes: spandrel builds GFPGAN at its one released size whatever the file says (87 M parameters, 349 MB, seconds
per face on a CPU), so there is no small GFPGAN file. CodeFormer's convolutional autoencoder is fixed too (slower
still); ``full=False`` shrinks only its transformer and codebook. RestoreFormer is read from tensor shapes, so
``full=False`` gives a narrow, fast one. ``full=True`` gives the released sizes (~290-380 MB), e.g. for benchmarks.

Trained GFPGAN decoders add noise with learnt strengths; a fresh one has them at 0, which would hide any noise
handling. ``save_gfpgan`` sets them to ``noise_strength`` so tests can see the noise.
"""

from __future__ import annotations

from pathlib import Path

import torch


def _seeded(build, seed: int):
    """``build()`` under a fixed torch seed, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build().eval()


def gfpgan_network(seed: int = 0, noise_strength: float = 0.5, **sizes):
    """A random-init GFPGANv1Clean (spandrel's class; ``sizes`` e.g. ``narrow=0.125`` for a module that spandrel
    would not load from a file but that runs 50x faster) with non-zero noise strengths."""
    from spandrel.architectures.GFPGAN import GFPGAN

    model = _seeded(lambda: GFPGAN(**sizes), seed)
    with torch.no_grad():
        for name, param in model.stylegan_decoder.named_parameters():
            # StyleConv.weight (shape (1,)) scales the injected noise
            if name.endswith(".weight") and param.shape == (1,):
                param.fill_(noise_strength)
    return model


def save_gfpgan(path: str | Path, seed: int = 0, noise_strength: float = 0.5) -> Path:
    """Write a full-size random-init GFPGANv1.4-layout file (349 MB)."""
    path = Path(path)
    torch.save({"params_ema": gfpgan_network(seed, noise_strength).state_dict()}, path)
    return path


def codeformer_network(full: bool = False, seed: int = 0):
    """A random-init CodeFormer; ``full=False``: 1 transformer layer of width 64, a 64-entry codebook, and fusion
    at 32 and 64 px only (the autoencoder keeps its released size)."""
    from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

    sizes = {} if full else dict(dim_embd=64, n_layers=1, codebook_size=64, connect_list=["32", "64"])
    return _seeded(lambda: CodeFormer(**sizes), seed)


def save_codeformer(path: str | Path, full: bool = False, seed: int = 0) -> Path:
    """Write a random-init codeformer.pth-layout file (377 MB full, 288 MB small)."""
    path = Path(path)
    torch.save({"params_ema": codeformer_network(full, seed).state_dict()}, path)
    return path


def restoreformer_network(full: bool = False, seed: int = 0):
    """A random-init RestoreFormer; ``full=False``: 32 channels at every level, one res block, 64 codes."""
    from spandrel.architectures.RestoreFormer import RestoreFormer

    sizes = {} if full else dict(ch=32, ch_mult=(1, 1, 1, 1, 1, 1), num_res_blocks=1, n_embed=64, embed_dim=32,
                                 z_channels=32)
    return _seeded(lambda: RestoreFormer(**sizes), seed)


def save_restoreformer(path: str | Path, full: bool = False, seed: int = 0) -> Path:
    """Write a random-init RestoreFormer.pth-layout file (291 MB full, a few MB small)."""
    path = Path(path)
    torch.save({"params_ema": restoreformer_network(full, seed).state_dict()}, path)
    return path


def save_alexnet(path: str | Path, full: bool = False, seed: int = 0) -> Path:
    """Write a random-init AlexNet in torchvision's checkpoint layout (``alexnet-owt-7be5be79.pth``: a state dict
    ``features.N.*`` + ``classifier.N.*``). ``full=False`` leaves out the classifier (233 MB of the real 244 MB),
    which LPIPS does not read; ``full=True`` writes torchvision's whole network."""
    from torchvision.models import alexnet

    from fersr_stream.quality.lpips import AlexNetFeatures

    path = Path(path)
    network = _seeded(alexnet if full else AlexNetFeatures, seed)
    torch.save(network.state_dict(), path)
    return path


def save_lpips_head(path: str | Path, seed: int = 0) -> Path:
    """Write random non-negative LPIPS v0.1 AlexNet head weights in the layout of lpips' ``weights/v0.1/alex.pth``
    (``lin<k>.model.1.weight``, (1, C, 1, 1) each)."""
    from fersr_stream.quality.lpips import CHANNELS

    generator = torch.Generator().manual_seed(seed)
    state = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=generator) / c
             for k, c in enumerate(CHANNELS)}
    path = Path(path)
    torch.save(state, path)
    return path


def inception_resnet_v1_network(seed: int = 0):
    """A random-init InceptionResnetV1 (fersr's port, facenet-pytorch's module names) whose BatchNorm layers
    carry random running statistics, so that a layout test also exercises them."""
    from fersr_stream.quality.identity import InceptionResnetV1

    model = _seeded(InceptionResnetV1, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.normal_(0, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
    return model


def save_inception_resnet_v1(path: str | Path, seed: int = 0) -> Path:
    """Write a random-init checkpoint in the layout of facenet-pytorch's ``20180402-114759-vggface2.pt`` (a plain
    state dict, the 8631-way VGGFace2 classifier ``logits.*`` included; 112 MB)."""
    path = Path(path)
    torch.save(inception_resnet_v1_network(seed).state_dict(), path)
    return path
