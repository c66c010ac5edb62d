"""A synthetic stand-in for KDEF: procedurally drawn faces in KDEF's exact layout and naming.

Expressions differ in fine details (mouth curve and opening, brow height and slant, eye opening, a nose
wrinkle), so that shrinking a face to a few pixels genuinely removes the cue. It feeds tests, the smoke
config and the benchmark; its numbers say the code works, never how KDEF behaves.
"""

from __future__ import annotations

import functools
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fersr_stream.classify.labels import KDEF_CODES
from fersr_stream.errors import ConfigError

from .kdef import SYNTHETIC_MARKER

ANGLES = ("FL", "HL", "S", "HR", "FR")
YAW = {"FL": -1.0, "HL": -0.5, "S": 0.0, "HR": 0.5, "FR": 1.0}  # subject turned to their left = negative
SUPERSAMPLE = 4


@dataclass(frozen=True)
class Expression:
    """Expression parameters, in units of the face half-width unless noted."""

    mouth_curve: float  # + smile, - frown
    mouth_open: float  # 0 closed .. 1 wide open
    mouth_width: float
    brow_raise: float  # + up
    brow_slant: float  # + inner ends down (anger), - inner ends up (sadness, fear)
    eye_open: float  # 1 = neutral
    wrinkle: bool = False  # disgust: lines across the nose


EXPRESSIONS = {
    "AF": Expression(-0.05, 0.45, 0.50, 0.16, -0.10, 1.45),
    "AN": Expression(-0.08, 0.00, 0.45, -0.10, 0.16, 0.70),
    "DI": Expression(-0.12, 0.10, 0.40, -0.06, 0.06, 0.60, wrinkle=True),
    "HA": Expression(0.22, 0.25, 0.62, 0.02, 0.00, 0.80),
    "NE": Expression(0.00, 0.00, 0.45, 0.00, 0.00, 1.00),
    "SA": Expression(-0.20, 0.00, 0.42, 0.05, -0.16, 0.80),
    "SU": Expression(0.00, 0.90, 0.30, 0.24, -0.02, 1.55),
}


def person_ids(n: int) -> list[str]:
    """``n`` person ids alternating female and male: F01, M01, F02, M02, ..."""
    return [f"{'FM'[i % 2]}{i // 2 + 1:02d}" for i in range(n)]


def claim(out: str | Path) -> None:
    """Raise ConfigError unless ``out`` is new, empty, or holds a set that :func:`write` drew: a synthetic set
    never goes into, nor is read from, a folder of the user's (a real KDEF would be trained on as "synthetic")."""
    out = Path(out)
    if (out / SYNTHETIC_MARKER).is_file() or not out.exists():
        return
    if not out.is_dir() or any(out.iterdir()):
        raise ConfigError(f"the synthetic set is written into a new or empty folder, and {out} holds other files "
                          f"(a real dataset is used with data.kind kdef, the default)")


def write(out: str | Path, people: int | list[str] = 4, width: int = 140, seed: int = 0,
          quality: int = 95) -> Path:
    """Write ``out/KDEF/<AF01>/<AF01AFS.JPG>`` for every person x 7 emotions x 5 angles x 2 sessions.

    The set is drawn into a folder beside ``KDEF`` and renamed into place whole, replacing an earlier drawn set:
    a run stopped while drawing leaves no ``KDEF`` (the next one draws it again), never a partial set that would
    be trained on.

    Args:
        people: how many identities (ids from :func:`person_ids`) or explicit ids such as ``["F31", "M31"]``.
        width: image width in px; the height keeps KDEF's 562 x 762 aspect.

    Returns:
        The ``KDEF`` folder written.

    Raises:
        ConfigError: ``out`` cannot be written.
    """
    ids = person_ids(people) if isinstance(people, int) else list(people)
    out = Path(out)
    root, drawing, earlier = out / "KDEF", out / ".KDEF.drawing", out / ".KDEF.earlier"
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / SYNTHETIC_MARKER).write_text("Procedurally drawn faces in KDEF's layout, written by fersr-train "
                                            "(training/synthetic.py): not KDEF, and not real faces.\n")
        for leftover in (drawing, earlier):
            shutil.rmtree(leftover, ignore_errors=True)
        _draw_all(drawing, ids, width, seed, quality)
        if root.exists():
            root.rename(earlier)
        drawing.rename(root)
        shutil.rmtree(earlier, ignore_errors=True)
    except OSError as exc:
        raise ConfigError(f"cannot write the synthetic set into {out}: {exc.strerror or exc}") from None
    return root


def _draw_all(root: Path, ids: list[str], width: int, seed: int, quality: int) -> None:
    """Every image of the people ``ids`` into ``root/<session><id>/``."""
    height = int(round(width * 762 / 562))
    for pid in ids:
        person = identity(pid, seed)
        for session in ("A", "B"):
            folder = root / f"{session}{pid}"
            folder.mkdir(parents=True, exist_ok=True)
            for code in KDEF_CODES:
                for angle in ANGLES:
                    image = draw(person, EXPRESSIONS[code], YAW[angle], session, width, height)
                    name = folder / f"{session}{pid}{code}{angle}.JPG"
                    if not cv2.imwrite(str(name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                                       [cv2.IMWRITE_JPEG_QUALITY, quality]):
                        raise OSError(f"cannot write {name}")


def inject_defects(root: str | Path) -> dict[str, str]:
    """Reproduce KDEF's known defects in a synthetic tree that holds persons F31 and M31 (tests).

    Renames AF31SAHL -> AF31V and AM31SUHR -> AM31H, blackens two images, truncates one, and re-saves two
    as 970x633.

    Returns:
        {file name as now on disk: the defect}.
    """
    root = Path(root)
    done = {}
    for folder, old, new in (("AF31", "AF31SAHL", "AF31V"), ("AM31", "AM31SUHR", "AM31H")):
        (root / folder / f"{old}.JPG").rename(root / folder / f"{new}.JPG")
        done[f"{folder}/{new}.JPG"] = "misnamed"
    black = [p for p in sorted(root.glob("B*/*NE*.JPG"))][:2]
    for path in black:
        image = cv2.imread(str(path))
        cv2.imwrite(str(path), (image * 0.03).astype(np.uint8))
        done[f"{path.parent.name}/{path.name}"] = "near-black"
    corrupt = sorted(root.glob("B*/*HA*.JPG"))[0]
    corrupt.write_bytes(corrupt.read_bytes()[: corrupt.stat().st_size // 2])
    done[f"{corrupt.parent.name}/{corrupt.name}"] = "corrupt"
    for path in sorted(root.glob("A*/*SUS.JPG"))[:2]:
        image = cv2.imread(str(path))
        h, w = image.shape[:2]
        canvas = np.full((633, 970, 3), image[2, 2], np.uint8)
        scale = 633 / h
        face = cv2.resize(image, (int(round(w * scale)), 633), interpolation=cv2.INTER_CUBIC)
        x0 = (970 - face.shape[1]) // 2
        canvas[:, x0:x0 + face.shape[1]] = face
        cv2.imwrite(str(path), canvas)
        done[f"{path.parent.name}/{path.name}"] = "oversized"
    return done


@dataclass(frozen=True)
class Identity:
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    shirt: tuple[float, float, float]
    face_aspect: float  # height / width of the head ellipse
    eye_gap: float
    long_hair: bool
    seed: int


def identity(pid: str, seed: int) -> Identity:
    rng = np.random.default_rng([seed, int(pid[1:]), ord(pid[0])])
    tone = rng.uniform(0.45, 1.0)
    skin = (235 * tone + 10, 190 * tone + 10, 160 * tone + 5)
    hair = tuple(float(v) for v in rng.uniform(20, 120) * np.array([1.0, 0.8, 0.6]))
    shirt = tuple(float(v) for v in rng.uniform(40, 200, 3))
    return Identity(skin, hair, shirt, float(rng.uniform(1.18, 1.38)), float(rng.uniform(0.36, 0.46)),
                     pid[0] == "F", int(rng.integers(1 << 30)))


def draw(identity: Identity, expr: Expression, yaw: float, session: str, width: int, height: int) -> np.ndarray:
    """(height, width, 3) uint8 RGB: one face on KDEF's plain background, head centred as in KDEF.

    ``yaw`` in [-1, 1] turns the head (1 = full profile to the subject's right).
    """
    s = SUPERSAMPLE
    W, H = width * s, height * s
    rng = np.random.default_rng([identity.seed, int(yaw * 4) + 4, ord(session)])
    shift = 8 if session == "B" else 0  # the second session: slightly other lighting and framing
    canvas = np.empty((H, W, 3), np.float32)
    canvas[:] = np.array([150.0, 160.0, 170.0]) + shift
    cx, cy = W * (0.5 + rng.normal(0, 0.006)), H * (0.45 + rng.normal(0, 0.004))
    rx = W * 0.22
    ry = rx * identity.face_aspect
    turn = math.cos(yaw * math.radians(70))  # how much of the face's width faces the camera
    off = math.sin(yaw * math.radians(70)) * rx * 0.55  # features slide towards the turned side

    ell = functools.partial(_ellipse, canvas)
    ell((cx, H * 1.05), (rx * 2.0, ry * 0.9), 0, identity.shirt)  # shoulders
    ell((cx, cy + ry * 0.9), (rx * 0.45, ry * 0.5), 0, identity.skin)  # neck
    if identity.long_hair:
        ell((cx - off * 0.3, cy), (rx * 1.15, ry * 1.05), 0, identity.hair)
    ell((cx, cy), (rx * (0.75 + 0.25 * turn), ry), 0, identity.skin)
    ell((cx - off * 0.4, cy - ry * 0.55), (rx * (0.8 + 0.2 * turn), ry * 0.55), 0, identity.hair, -1, 180, 360)
    fx, eye_y = cx + off, cy - ry * 0.12  # the features' centre line and the eyes' height
    _eyes(canvas, identity, expr, yaw, fx, eye_y, rx, turn)
    _nose(canvas, identity, expr.wrinkle, yaw, fx, eye_y, cy, rx, ry)
    _mouth(canvas, expr, fx, cy + ry * 0.5, rx, turn)
    image = cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA)
    image += rng.normal(0, 2.0, image.shape).astype(np.float32)  # sensor-like grain
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def _ellipse(canvas: np.ndarray, center, axes, angle, color, thickness=-1, a0=0, a1=360) -> None:
    """An anti-aliased ellipse at sub-pixel precision (OpenCV's 4 fractional bits); axes of at least 1 px."""
    c = (int(round(center[0] * 16)), int(round(center[1] * 16)))
    ax = (max(int(round(axes[0] * 16)), 16), max(int(round(axes[1] * 16)), 16))
    cv2.ellipse(canvas, c, ax, angle, a0, a1, color, thickness, cv2.LINE_AA, shift=4)


def _line(canvas: np.ndarray, points: np.ndarray, color, thickness: int) -> None:
    """An anti-aliased open polyline through (K, 2) points at sub-pixel precision."""
    cv2.polylines(canvas, [np.round(points * 16).astype(np.int32)], False, color, thickness, cv2.LINE_AA, shift=4)


def _eyes(canvas: np.ndarray, identity: Identity, expr: Expression, yaw: float, fx: float, eye_y: float,
          rx: float, turn: float) -> None:
    """Both eyes and brows; the eye on the far side shrinks and hides as the head turns."""
    dark = (40.0, 30.0, 30.0)
    gap = identity.eye_gap * rx
    for side in (-1, 1):
        visible = max(0.0, 1.0 - max(0.0, side * -yaw) * 1.1) if yaw else 1.0
        if visible < 0.15:
            continue
        ex = fx + side * gap * turn
        ew, eh = rx * 0.16 * visible, rx * 0.075 * expr.eye_open
        _ellipse(canvas, (ex, eye_y), (ew, eh), 0, (250.0, 250.0, 250.0))
        _ellipse(canvas, (ex, eye_y), (ew * 0.45, min(eh, ew * 0.45)), 0, dark)
        by = eye_y - rx * (0.22 + expr.brow_raise)
        inner = ex - side * ew * 1.2
        outer = ex + side * ew * 1.2
        slant = expr.brow_slant * rx
        p = np.array([[inner, by + slant], [ex, by - rx * 0.03], [outer, by - slant * 0.3]], np.float32)
        _line(canvas, p, identity.hair if identity.hair[0] < 90 else dark, max(int(rx * 0.05), 1))


def _nose(canvas: np.ndarray, identity: Identity, wrinkle: bool, yaw: float, fx: float, eye_y: float, cy: float,
          rx: float, ry: float) -> None:
    """The nose line, and disgust's lines across it."""
    nose = np.array([[fx, eye_y + rx * 0.05], [fx + rx * 0.06 * (1 if yaw >= 0 else -1), cy + ry * 0.22],
                     [fx, cy + ry * 0.25]], np.float32)
    shade = tuple(v * 0.75 for v in identity.skin)
    _line(canvas, nose, shade, max(int(rx * 0.03), 1))
    if wrinkle:
        for k in (-1, 1):
            y = eye_y + rx * (0.12 + 0.05 * k)
            _line(canvas, np.array([[fx - rx * 0.1, y], [fx + rx * 0.1, y]]), shade, max(int(rx * 0.02), 1))


def _mouth(canvas: np.ndarray, expr: Expression, fx: float, my: float, rx: float, turn: float) -> None:
    """Both lips as curves, the opening between them filled dark."""
    mw = rx * expr.mouth_width * (0.6 + 0.4 * turn)
    xs = np.linspace(-1, 1, 15)
    upper = np.stack([fx + xs * mw, my + expr.mouth_curve * rx * (1 - xs ** 2) - expr.mouth_curve * rx * 0.5], 1)
    lower = upper.copy()
    lower[:, 1] += expr.mouth_open * rx * 0.35 * (1 - xs ** 2)
    if expr.mouth_open > 0:
        cv2.fillPoly(canvas, [np.round(np.concatenate([upper, lower[::-1]]) * 16).astype(np.int32)], (60.0, 20.0, 20.0),
                     cv2.LINE_AA, shift=4)
    for line in (upper, lower):
        _line(canvas, line, (150.0, 60.0, 60.0), max(int(rx * 0.045), 1))
