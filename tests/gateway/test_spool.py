"""The spool: sanitised paths, the durable write path, the disk reserve, the lock and leftovers."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.spool import (
    OutOfSpaceError,
    Spool,
    SpoolError,
    SpoolLockedError,
    instance_relpath,
    resolve_in,
    safe_uid_component,
)

HASH = "ab" * 32


def opened(root: Path, free: int = 10**12, reserve: int = 0) -> Spool:
    spool = Spool(root, reserve, free_bytes=lambda path: free)
    spool.open()
    return spool


def test_conformant_uids_are_kept_as_names() -> None:
    assert safe_uid_component("1.2.840.10008.5.1.4.1.1.1") == "1.2.840.10008.5.1.4.1.1.1"
    assert safe_uid_component("1.2.3\x00") == "1.2.3"  # UI padding


@pytest.mark.parametrize(
    "uid", ["..", ".", "../../etc/passwd", "/etc/passwd", "1.2/3", "1..2", "1.2.", "a.b", "", "1" * 65, "1.2\\3"]
)
def test_anything_else_becomes_a_hash_name(uid: str) -> None:
    name = safe_uid_component(uid)
    assert name.startswith("x") and len(name) == 41 and name[1:].isalnum()


@given(st.text(max_size=80), st.text(max_size=80), st.text(max_size=80))
def test_no_uid_can_leave_the_spool(study: str, series: str, sop: str) -> None:
    root = Path("/spool")
    relpath = instance_relpath(study, series, sop, HASH)
    assert len(relpath.parts) == 3
    assert all(part not in ("", ".", "..") and "/" not in part and "\x00" not in part for part in relpath.parts)
    assert resolve_in(root, relpath).is_relative_to(root)


def test_resolve_in_refuses_escapes(tmp_path: Path) -> None:
    for bad in ("../x", "/etc/passwd", "a/../../b", "", "."):
        with pytest.raises(ValueError, match="spool"):
            resolve_in(tmp_path, bad)
    (tmp_path / "link").symlink_to("/")
    with pytest.raises(ValueError, match="leaves the spool"):
        resolve_in(tmp_path, "link/etc")


def test_the_relpath_names_study_series_and_instance_with_the_hash() -> None:
    assert instance_relpath("1.2", "1.2.3", "1.2.3.4", HASH) == PurePosixPath("1.2/1.2.3/1.2.3.4.abababababababab.dcm")
    with pytest.raises(ValueError, match="64 lowercase hex"):
        instance_relpath("1", "2", "3", "nothex")


@pytest.mark.parametrize("size", [10, 3 << 20])  # below and above the helper-thread threshold
def test_write_hash_commit(tmp_path: Path, size: int) -> None:
    spool = opened(tmp_path / "spool")
    data = os.urandom(size)
    incoming = spool.begin(b"HEADER")
    for start in range(0, size, 100_000):
        incoming.write(memoryview(data)[start : start + 100_000])
    assert incoming.ok
    assert incoming.content_sha256 == hashlib.sha256(data).hexdigest()  # the header is not hashed
    assert incoming.file_size == size + 6
    final = spool.commit(incoming, instance_relpath("1.2", "1.2.3", "1.2.3.4", incoming.content_sha256))
    assert final.read_bytes() == b"HEADER" + data
    assert not incoming.path.exists()
    assert list((tmp_path / "spool" / ".incoming").iterdir()) == []
    incoming.discard()  # after a commit: nothing happens
    assert final.exists()


def test_discard_removes_the_partial_file(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    incoming = spool.begin(b"H")
    incoming.write(b"x" * (2 << 20))
    incoming.discard()
    incoming.discard()
    assert not incoming.path.exists()


def test_below_the_reserve_nothing_is_written(tmp_path: Path) -> None:
    spool = opened(tmp_path, free=100, reserve=1000)
    with pytest.raises(OutOfSpaceError, match="below the reserve of 1000 bytes"):
        spool.begin(b"H")
    assert list(spool.incoming_dir.iterdir()) == []


def test_crossing_the_reserve_while_writing_deletes_the_partial_file(tmp_path: Path) -> None:
    free = [10**9]
    spool = Spool(tmp_path, 1000, free_bytes=lambda path: free[0])
    spool.open()
    incoming = spool.begin(b"H")
    incoming.write(b"x" * 1024)
    free[0] = 10
    for _ in range(5):
        incoming.write(b"x" * (4 << 20))
    assert not incoming.ok and incoming.out_of_space
    assert "fell below the reserve" in (incoming.failure or "")
    assert list(spool.incoming_dir.iterdir()) == []
    with pytest.raises(SpoolError, match="cannot commit a failed incoming file"):
        spool.commit(incoming, "1/2/3.dcm")


def test_a_failing_write_is_recorded_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = opened(tmp_path)
    incoming = spool.begin(b"H")

    def disk_full(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full)
    incoming.write(b"abc")
    monkeypatch.undo()
    assert incoming.out_of_space and "No space left on device" in (incoming.failure or "")
    assert not incoming.path.exists()


def test_one_process_per_spool_and_crash_leftovers_are_removed(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    leftover = spool.begin(b"partial")
    with pytest.raises(SpoolLockedError, match="in use by another gazex process"):
        Spool(tmp_path, 0).open()
    spool.close()  # like a crash: the partial file stays
    assert leftover.path.exists()
    again = Spool(tmp_path, 0)
    assert again.open() == 1
    assert not leftover.path.exists()
    again.close()


def test_remove_a_replaced_copy(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    incoming = spool.begin(b"H")
    final = spool.commit(incoming, "1/2/3.dcm")
    spool.remove("1/2/3.dcm")
    spool.remove("1/2/3.dcm")  # already gone: fine
    assert not final.exists()


def test_a_write_failing_in_the_helper_thread_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = opened(tmp_path)
    incoming = spool.begin(b"H")
    incoming.write(b"x" * (2 << 20))  # past the threshold: later chunks go to the helper thread
    real_write = os.write

    def fail_later(fd: int, data: object) -> int:
        if fd == incoming._fd:
            raise OSError(28, "No space left on device")
        return real_write(fd, data)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "write", fail_later)
    for _ in range(3):
        incoming.write(b"y" * (1 << 20))
    incoming.complete()
    monkeypatch.undo()
    assert incoming.out_of_space and not incoming.ok
    assert list(spool.incoming_dir.iterdir()) == []


def test_nodes_sharing_a_spool_each_lock_and_sweep_only_their_own_incoming_folder(tmp_path: Path) -> None:
    first = Spool(tmp_path, 0, node_id="gazex-0")
    second = Spool(tmp_path, 0, node_id="gazex-1")
    first.open()
    second.open()  # another node on the same spool: its own lock
    in_flight = second.begin(b"")
    in_flight.write(b"data")
    try:
        with pytest.raises(SpoolLockedError, match="as node gazex-0"):
            Spool(tmp_path, 0, node_id="gazex-0").open()  # the same node twice is refused
        restarted = Spool(tmp_path, 0, node_id="gazex-0")
        first.close()
        assert restarted.open() == 0  # its sweep leaves the other node's file in flight alone
        assert in_flight.path.exists() and in_flight.path.parent.name == ".incoming-gazex-1"
        restarted.close()
    finally:
        in_flight.discard()
        second.close()
