"""The dataset layouts ``fersr-train`` reads, by ``data.kind``: each registered once here, so that the config, the
CLI and the study know the same names.

Each loader lists every file it sets aside (:class:`training.dataset.Issue`) and says how its faces are framed;
the modules' docstrings give each layout, its labels and its split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fersr_stream.errors import ConfigError

from . import affectnet, ckplus, fer2013, folders, jaffe, kdef, rafdb
from .dataset import Dataset


@dataclass(frozen=True)
class Layout:
    """A dataset layout: ``load`` reads ``data.root`` (with the ``data`` section's options); ``path`` says what
    ``--data`` points to."""

    load: Callable[..., Dataset]
    path: str


LAYOUTS = {
    "kdef": Layout(lambda data: kdef.load(data.root, data.angles, data.sessions),
                   "KDEF_and_AKDEF/ or KDEF/ (AF01/AF01AFS.JPG)"),
    "folders": Layout(lambda data: folders.load(data.root, data.person_regex, data.classes),
                      "one folder per class (happy/, ...), optionally inside train/ val/ test/"),
    "fer2013": Layout(lambda data: fer2013.load(data.root), "fer2013.csv (emotion,pixels,Usage) or its folder"),
    "rafdb": Layout(lambda data: rafdb.load(data.root),
                    "RAF-DB's folder or its basic/ (EmoLabel/list_patition_label.txt, Image/aligned/)"),
    "ckplus": Layout(lambda data: ckplus.load(data.root),
                     "the folder holding cohn-kanade-images/ and Emotion/, or CK+48/"),
    "jaffe": Layout(lambda data: jaffe.load(data.root), "jaffe/ (KA.AN1.39.tiff)"),
    "affectnet": Layout(lambda data: affectnet.load(data.root),
                        "the folder holding train_set/ and val_set/ (images/, annotations/)"),
}
KINDS = tuple(LAYOUTS)


def load(data) -> Dataset:
    """The dataset ``data`` (a :class:`training.config.DataConfig`) names.

    Raises:
        ConfigError: no ``data.root``.
        DatasetError: a folder that is not of the layout, or holds no usable image.
    """
    if not data.root:
        raise ConfigError(f"no dataset given: pass --data PATH ({data.kind}: {LAYOUTS[data.kind].path}) "
                          "or set data.root")
    return LAYOUTS[data.kind].load(data)
