"""User-facing errors: each one is printed as a single line and exits with code 2.

Anything else that escapes is a bug and keeps its traceback.
"""


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
