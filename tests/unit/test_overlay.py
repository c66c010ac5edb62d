"""Overlay: boxes in the emotion's colour, labels, the inset, and drawing on a copy or in place."""

from __future__ import annotations

import numpy as np

from fersr_stream import overlay
from fersr_stream.classify.labels import Emotion
from fersr_stream.crops import HostCrops
from fersr_stream.types import Faces


def _faces(restored=False, crop=None) -> Faces:
    probs = np.full((1, 7), 0.05, np.float32)
    probs[0, Emotion.HAPPY] = 0.7
    return Faces(np.array([[100, 80, 200, 180]], np.float32), np.array([0.9], np.float32),
                 track_ids=np.array([4]), probs=probs, restored=np.array([restored]),
                 crops=None if crop is None else HostCrops(crop))


def test_box_in_the_emotion_colour_and_label():
    image = np.zeros((720, 1280, 3), np.uint8)  # 720p: 2 px lines, whose centre carries the full colour
    out = overlay.annotate(image, _faces())
    assert not image.any()  # a copy by default
    colour = np.array(overlay.COLOURS[Emotion.HAPPY])

    def near_colour(patch):  # antialiased lines: some pixel of the edge carries the colour
        return np.abs(patch.astype(int) - colour).sum(-1).min() < 10

    assert near_colour(out[120:140, 98:103]) and near_colour(out[120:140, 198:203])  # left and right edges
    assert not out[130, 150].any()  # the face itself is left alone
    assert out[60:80, 100:200].any()  # the label sits above the box
    assert overlay.label(_faces(), 0) == "#4 happy 0.70" and overlay.label(_faces(restored=True), 0).endswith(" R")


def test_in_place_drawing_returns_the_same_array():
    image = np.zeros((240, 320, 3), np.uint8)
    out = overlay.annotate(image, _faces(), copy=False)
    assert out is image and image.any()


def test_inset_shows_the_processed_face_beside_the_box():
    crop = np.full((1, 64, 64, 3), 200, np.uint8)
    out = overlay.annotate(np.zeros((240, 320, 3), np.uint8), _faces(crop=crop), inset=True)
    assert (out[100, 220] == 200).all()  # right of the box (x2 + 4), half the box high
    tiny = overlay.annotate(np.zeros((12, 12, 3), np.uint8), _faces(crop=crop), inset=True)
    assert not (tiny == 200).all(axis=2).any()  # no room for an inset: none drawn
