"""The one registry pattern of grmu (datasets, models, augmentations, unlearning methods).

A registry maps names to entries. Modules register their entries with a decorator at import
time; the package that owns a registry passes ``load_builtin``, a function whose plain
``import`` statements bring in its built-in modules, so that every name is known the first
time the registry is asked (and so that those imports stay visible to the stage-dependency
check, see ``grmu.stagedeps``). ``get`` refuses an unknown name with the valid ones.
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from grmu import GrmuError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, load_builtin: Callable[[], None] | None = None):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._load_builtin = load_builtin
        self._loaded = load_builtin is None

    def add(self, name: str, entry: T) -> T:
        self._entries[name] = entry
        return entry

    def remove(self, name: str) -> None:
        self._entries.pop(name, None)

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            self._load_builtin()

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def get(self, name: str) -> T:
        self._load()
        if name not in self._entries:
            raise GrmuError(f"unknown {self.kind} '{name}'; valid: {', '.join(self.names())}")
        return self._entries[name]

    def entries(self) -> list[T]:
        return [self._entries[k] for k in self.names()]

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries
