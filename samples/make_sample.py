"""Make samples/sample.mp4: real offline faces moving and changing size, with a quiet tone as audio.

Faces: scikit-image's ``astronaut()`` (NASA photo of Eileen Collins, public domain) and two faces from
``lfw_subset()`` (Labeled Faces in the Wild, 25x25 grayscale; see samples/README.md). Run from the repo root:

    python samples/make_sample.py            # rewrites samples/sample.mp4
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from skimage import data

from fersr_stream.testing import synthetic

# LFW faces (indices into lfw_subset) that OpenCV's Haar cascade finds when enlarged.
LFW_PICKS = (0, 25)


def faces() -> list[np.ndarray]:
    astronaut = data.astronaut()[40:190, 150:300]
    lfw = (data.lfw_subset()[list(LFW_PICKS)] * 255).round().astype(np.uint8)
    return [np.ascontiguousarray(astronaut)] + [np.repeat(f[..., None], 3, axis=2) for f in lfw]


def main(out: str = "samples/sample.mp4") -> None:
    boxes = synthetic.write_clip(out, faces(), n_frames=90, width=640, height=360, fps=15, min_size=56,
                                 max_size=150, audio=True, crf=28)
    print(f"wrote {out}: {len(boxes)} frames, {boxes.shape[1]} faces, {Path(out).stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main(*sys.argv[1:])
