"""The ToolInput lines of this source's runs still waiting for their output, kept in memory: a
live event log's next read asks for them whenever its lines hold a ToolOutput, and a read from
the server would make the batch's pipeline wait for each such file. Only this daemon writes its
runs' tool calls (its source's lock), so what it read once stays true, moved by its own writes.

As the checkpoints (files.py): what the batch in hand changes is apart until it commits, undone
with a file's savepoint, dropped with a rollback; a reconnect forgets everything. A run not read
yet is unknown, and stays so through writes: it is read once, when asked."""

import bisect

from daemon.storage.postgres.kept import Kept

CACHED_RUNS = 10_000      # runs whose open inputs are kept, at most (live logs: a few hundred)


class OpenInputs:
    def __init__(self) -> None:
        self._committed: dict[int, list[int]] = {}
        self._batch: Kept[int, list[int]] = Kept()

    def get(self, exec_id: int) -> list[int] | None:
        """The run's open ToolInput lines, oldest first; None: not known (read them, then `read`)."""
        lines = self._batch.get(exec_id) if exec_id in self._batch else self._committed.get(exec_id)
        return None if lines is None else list(lines)

    def read(self, exec_id: int, lines: list[int]):
        """What the server holds for the run now (in the batch)."""
        self._change(exec_id, lambda _: list(lines), known=True)

    def opened(self, exec_id: int, line: int):
        def add(lines: list[int]) -> list[int]:
            if line not in lines:
                bisect.insort(lines, line)
            return lines
        self._change(exec_id, add)

    def closed(self, exec_id: int, line: int):
        self._change(exec_id, lambda lines: [n for n in lines if n != line])

    def reset(self, exec_id: int):
        """The run's tool calls are deleted (its event log read again from its first byte)."""
        self._change(exec_id, lambda _: [], known=True)

    def _change(self, exec_id: int, how, known: bool = False):
        """The run's lines become `how(lines)`; a run not known stays unknown, unless `known`
        (what follows does not depend on what was there)."""
        before = self._batch.get(exec_id)
        lines = self._committed.get(exec_id) if before is None else before
        if lines is None and not known:
            return
        self._batch.put(exec_id, how([] if lines is None else list(lines)))

    def savepoint_started(self):
        self._batch.savepoint_started()

    def savepoint_undone(self):
        self._batch.savepoint_undone()

    def batch_over(self, committed: bool):
        if committed:
            if len(self._committed) > CACHED_RUNS:
                self._committed.clear()
            self._committed.update(self._batch.items())
        self._batch.clear()

    def forget(self):
        self._committed.clear()
