"""Name -> class registries (WeSpeaker-style), so a new corpus or encoder is one class plus one
config file, and code without Hydra can still build them by name."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import Callable, TypeVar

T = TypeVar("T", bound=type)


class Registry(dict):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: store the class under ``name`` and set its ``name`` attribute."""

        def deco(cls: T) -> T:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            cls.name = name
            self[name] = cls
            return cls

        return deco

    def lookup(self, name: str) -> type:
        try:
            return self[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {sorted(self)}") from None


def import_submodules(package: ModuleType) -> None:
    """Import every module of ``package`` so that each registers its classes."""
    for mod in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{mod.name}")
