"""User-facing errors: each one is printed as a single line and exits with code 2.

Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import pickle


def unreadable(path, error: BaseException) -> str:
    """Why the weights file ``path`` could not be read, for a user: empty, cut short, bytes that are no checkpoint,
    else the reader's own message (:func:`one_line`)."""
    try:
        if os.path.getsize(path) == 0:
            return "the file is empty (0 bytes)"
    except OSError:
        pass
    text = str(error)
    if isinstance(error, EOFError) or "central directory" in text:  # a pickle, or torch's zip, that ends early
        return "the file ends early (cut short? get it again)"
    # the unpickler's and safetensors' words for bytes that are not theirs at all (torch's weights-only refusal,
    # an UnpicklingError too, is of a real pickle: one_line says what it means)
    if (isinstance(error, (KeyError, pickle.UnpicklingError)) and not text.startswith("Weights only load failed")) \
            or "deserializing header" in text:
        return "it is not a PyTorch or safetensors checkpoint"
    return one_line(error)


def one_line(error: BaseException, limit: int = 160) -> str:
    """A third-party exception as a short line for a user-facing message (torch and pickle messages span lines).

    Its first sentence when that fits, else cut at a word; torch's "Weights only load failed" advice (to turn
    ``weights_only`` off, i.e. to run the file's pickled code) becomes what it means for the file.
    """
    text = " ".join(str(error).split()) or type(error).__name__
    if text.startswith("Weights only load failed"):
        return "torch will not read it as plain tensors (pickled objects besides tensors, or not a checkpoint)"
    first = text.split(". ", 1)[0]
    if len(first) <= limit:
        return first
    return text[:limit - 3].rsplit(" ", 1)[0] + "..."


class FersrError(Exception):
    """A user mistake or an unusable input: one line, exit code 2."""

    exit_code = 2


class SourceError(FersrError):
    """A source that cannot be opened or read (missing path, no camera, not a video)."""


class SinkError(FersrError):
    """An output that cannot be written (unwritable path, unknown extension)."""


class WeightsError(FersrError):
    """Weights that are missing, corrupt, of the wrong architecture, or fail their checksum."""


class ConfigError(FersrError):
    """An unknown or ill-typed configuration key or value."""
