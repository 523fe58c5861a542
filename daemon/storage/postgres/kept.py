"""Writes a batch keeps for its end (or for the next statement that must see them), one per key,
so that a file's own statements are few (none, most often: then it needs no savepoint either).
A file's savepoint undoes what the file kept; what was written inside it (for a statement that
had to see it) is kept again if the file is undone, since its rollback undid that write too."""

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")
_ABSENT = object()


class Kept(Generic[K, V]):
    def __init__(self) -> None:
        self._items: dict[K, V] = {}
        self._undo: list[tuple[K, object]] = []      # the file in hand's: the values before

    def __bool__(self) -> bool:
        return bool(self._items)

    def __contains__(self, key: K) -> bool:
        return key in self._items

    def keys(self):
        return self._items.keys()

    def items(self):
        return self._items.items()

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def put(self, key: K, value: V):
        self._undo.append((key, self._items.get(key, _ABSENT)))
        self._items[key] = value

    def take(self, in_file: bool) -> list[V]:
        """Everything kept, to be written now (inside a file's savepoint if `in_file`)."""
        values = list(self._items.values())
        if in_file:
            self._undo.extend(self._items.items())
        self._items.clear()
        return values

    def savepoint_started(self):
        self._undo.clear()

    def savepoint_undone(self):
        for key, before in reversed(self._undo):
            if before is _ABSENT:
                self._items.pop(key, None)
            else:
                self._items[key] = before
        self._undo.clear()

    def clear(self):
        self._items.clear()
        self._undo.clear()
