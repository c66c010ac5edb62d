"""The names a user can type for one kind of component (a detector, an enhancer, a classifier network).

Each kind has one :class:`Registry`, declared beside its base class, and each component's name is written once, in
that registry's table. The CLI's choices, the config checks, the study's parsing and the checkpoint reader all read
the registry, so a new component appears everywhere by being registered. Entries name the module and attribute
that implement them and are imported when first asked for: a stream that uses Haar never imports torchvision.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from .errors import ConfigError


class Registry:
    """Names of one kind of component, each mapped to ``"module:attribute"`` (imported on first use).

    Args:
        kind: what the names name, for messages ("detector", "enhancer", ...).
        entries: name -> ``"package.module:Attribute"``, in the order choices are listed.
    """

    def __init__(self, kind: str, entries: Mapping[str, str]):
        self.kind = kind
        self._entries = dict(entries)
        self._loaded: dict[str, object] = {}

    def names(self) -> tuple[str, ...]:
        """Every registered name, in registration order."""
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def check(self, name: str | None, key: str | None = None) -> str:
        """``name`` stripped and lower-cased, once known to be registered.

        Raises:
            ConfigError: an unknown name; the message names ``key`` (a config key) when given and lists the
                choices.
        """
        normal = (name or "").strip().lower()
        if normal not in self._entries:
            where = f"{key}: " if key else ""
            raise ConfigError(f"{where}unknown {self.kind} {name!r}; choose one of: {', '.join(self._entries)}")
        return normal

    def get(self, name: str | None):
        """The component registered as ``name`` (imported now if it was not yet).

        Raises:
            ConfigError: as :meth:`check`.
        """
        normal = self.check(name)
        if normal not in self._loaded:
            module, _, attribute = self._entries[normal].partition(":")
            self._loaded[normal] = getattr(importlib.import_module(module), attribute)
        return self._loaded[normal]
