"""User-facing errors: each one is printed as a single line and exits with code 2.

Anything else that escapes is a bug and keeps its traceback.
"""


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
