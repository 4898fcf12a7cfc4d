"""A task's history: bounded, oldest first, a plain list to read."""

from __future__ import annotations

from taskforce.core.state import HISTORY_LENGTH, History, HistoryEntry, TaskState


def entry(n: int) -> HistoryEntry:
    return HistoryEntry(float(n), 0, "start", n, "")


def test_history_keeps_the_latest_entries() -> None:
    history = History()
    for n in range(HISTORY_LENGTH + 5):
        history.append(entry(n))
    assert len(history) == HISTORY_LENGTH
    assert history[0] == entry(5)
    assert history[-1] == entry(HISTORY_LENGTH + 4)
    history.extend(entry(n) for n in range(1000, 1000 + HISTORY_LENGTH))
    assert [h.pid for h in history] == list(range(1000, 1000 + HISTORY_LENGTH))


def test_each_task_has_its_own_history() -> None:
    a, b = TaskState("a"), TaskState("b")
    a.history.append(entry(1))
    a.history[-1] = entry(2)
    assert list(a.history) == [entry(2)]
    assert not b.history
