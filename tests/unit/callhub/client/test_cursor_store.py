"""Cursor stores: what is saved is what is loaded, and a file is never half-written."""

from __future__ import annotations

import os
from pathlib import Path

import fakeredis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from callhub.client import CursorStore, FileCursorStore, MemoryCursorStore, RedisCursorStore

cursors = st.from_regex(r"[A-Za-z0-9._-]{1,200}", fullmatch=True)  # a sealed token's alphabet


async def test_a_file_store_starts_empty_and_keeps_the_last_cursor(tmp_path: Path) -> None:
    store = FileCursorStore(tmp_path / "helpdesk.cursor")
    assert await store.load() is None
    await store.save("c1")
    await store.save("c2")
    assert await FileCursorStore(tmp_path / "helpdesk.cursor").load() == "c2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["helpdesk.cursor"]  # no temp left


@given(cursor=cursors)
async def test_every_store_loads_what_it_saved(cursor: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        stores: list[CursorStore] = [
            MemoryCursorStore(), FileCursorStore(Path(directory) / "c"),
            RedisCursorStore(fakeredis.FakeAsyncRedis(), "consumer:cursor"),
        ]
        for store in stores:
            assert isinstance(store, CursorStore)
            await store.save(cursor)
            assert await store.load() == cursor


async def test_a_failed_write_leaves_the_old_cursor_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = FileCursorStore(tmp_path / "c")
    await store.save("old")

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        await store.save("new")
    monkeypatch.undo()
    assert await store.load() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["c"]
