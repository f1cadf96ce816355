"""A SQLite file's mark, read from its bytes as SQLite would see them, before SQLite opens it.

Opening a file with SQLite for writing recovers it: a -wal is replayed into the main file
(and deleted when the last connection closes), a hot rollback journal is rolled back and
deleted. A file jobkit refuses must be left byte for byte as it was (RELIABILITY.md 16),
so whether it is jobkit's is decided here, from the bytes alone, first.

SQLite's own read-only modes do not do: ``mode=ro`` still creates and writes the -shm,
and ``immutable=1`` ignores the -wal, whose last commits may be the very ones that
changed the mark. What is read here (file formats as sqlite.org/fileformat2.html
describes them):

- page 1 of the main file: ``user_version`` at byte 60, ``application_id`` at 68, and
  the b-tree header of ``sqlite_schema`` at 100 (a leaf with no cells: a blank file);
- the -wal: the last copy of page 1 in a committed transaction, frames whose salts match
  the header, their checksums checked when the copies disagree with each other;
- a rollback journal: the copy of page 1 that rolling it back would restore.
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

SQLITE_HEADER = b"SQLite format 3\x00"
PAGE_ONE_READ = 108  # the database header (100 bytes) and the b-tree header of sqlite_schema
WAL_MAGIC = (0x377F0682, 0x377F0683)  # checksums little-endian, big-endian
WAL_VERSION = 3007000
JOURNAL_MAGIC = bytes.fromhex("d9d505f920a163d7")
_MASK = 0xFFFFFFFF


class Mark(NamedTuple):
    """What says whose a SQLite file is: its ``application_id``, ``user_version``, and whether it holds nothing."""

    application_id: int
    user_version: int
    blank: bool  # sqlite_schema is empty: no table, index, view or trigger


class FileRefused(Exception):
    """A path whose bytes cannot be those of a database file (the caller words the error)."""

    def __init__(self, reason: str, path: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path


def mark_of(page: bytes) -> Mark:
    """The mark in the first bytes of page 1 (at least :data:`PAGE_ONE_READ` of them)."""
    user_version, application_id = struct.unpack_from(">I4xI", page, 60)
    blank = page[100] == 0x0D and struct.unpack_from(">H", page, 103)[0] == 0
    return Mark(_signed(application_id), _signed(user_version), blank)


def _signed(value: int) -> int:  # PRAGMA reads these 32-bit fields as signed
    return value - (1 << 32) if value & 0x80000000 else value


def marks(path: str) -> list[Mark]:
    """Every mark the file at *path* would show SQLite once its side files are recovered; most often one.

    The first is what the main file and its -wal show; a second comes from a rollback
    journal that would restore another page 1 (whether SQLite rolls it back depends on
    locks held at that moment, so both count). :class:`FileRefused` for a path that is
    not a regular file, or whose main file cannot be a SQLite database.
    """
    with _open_regular(path, side=False) as main:
        assert main is not None  # a main file that is missing raises FileNotFoundError
        page = main.read(PAGE_ONE_READ)
    if not page:
        raise FileRefused("empty", path)
    if not page.startswith(SQLITE_HEADER) or len(page) < PAGE_ONE_READ:
        raise FileRefused("not sqlite", path)
    check_side_files(path)
    found = [_with_wal(path, mark_of(page))]
    restored = _journal_page_one(path)
    if restored is not None and mark_of(restored) not in found:
        found.append(mark_of(restored))
    return found


@contextlib.contextmanager
def _open_regular(path: str, *, side: bool) -> Iterator[BinaryIO | None]:
    """*path* opened for reading without blocking; None for a side file that does not exist."""
    try:
        # O_NONBLOCK: opening a FIFO would otherwise wait for a writer, for ever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        if not side:
            raise
        yield None
        return
    except IsADirectoryError:
        raise FileRefused("a directory", path) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise FileRefused(_kind(mode), path)
    with os.fdopen(fd, "rb") as file:
        yield file


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def check_side_files(path: str) -> None:
    """Refuse a -shm (or -wal, -journal) that is not a regular file: SQLite would block on it or misuse it."""
    for suffix in ("-wal", "-shm", "-journal"):
        with _open_regular(path + suffix, side=True):
            pass


# -- the -wal ---------------------------------------------------------------------------
def _with_wal(path: str, main: Mark) -> Mark:
    """The mark SQLite would read once the -wal beside *path* is recovered (*main* without one)."""
    with _open_regular(f"{path}-wal", side=True) as wal:
        if wal is None:
            return main
        copies = [mark_of(page) for page in _wal_page_ones(wal, verify=False)]
        if all(copy == main for copy in copies):
            return main  # every version agrees: no need to know which one SQLite keeps
        wal.seek(0)
        kept = list(_wal_page_ones(wal, verify=True))
    return mark_of(kept[-1]) if kept else main


def _wal_page_ones(wal: BinaryIO, *, verify: bool) -> Iterator[bytes]:
    """Each copy of page 1 in a committed transaction of the WAL, oldest first.

    As SQLite's recovery reads a WAL: frames follow a valid header while their salts
    match it; a transaction counts once its commit frame is read. With *verify*, the
    running checksum must hold too, and reading stops where it breaks (a torn write);
    without, only the first :data:`PAGE_ONE_READ` bytes of each copy are read.
    """
    header = wal.read(32)
    if len(header) < 32:
        return
    magic, version, page_size, _, salt1, salt2, check1, check2 = struct.unpack(">8I", header)
    if magic not in WAL_MAGIC or version != WAL_VERSION or not _valid_page_size(page_size):
        return
    order = ">" if magic & 1 else "<"
    sums = (0, 0)
    if verify:
        sums = _checksum(order, header[:24], sums)
        if sums != (check1, check2):
            return
    pending: list[bytes] = []
    while True:
        frame = wal.read(24)
        if len(frame) < 24:
            return
        page_number, commit, frame_salt1, frame_salt2, sum1, sum2 = struct.unpack(">6I", frame)
        if (frame_salt1, frame_salt2) != (salt1, salt2) or page_number == 0:
            return
        if verify:
            page = wal.read(page_size)
            if len(page) < page_size:
                return
            sums = _checksum(order, page, _checksum(order, frame[:8], sums))
            if sums != (sum1, sum2):
                return
        elif page_number == 1:
            page = wal.read(PAGE_ONE_READ)
            wal.seek(page_size - PAGE_ONE_READ, os.SEEK_CUR)
        else:
            wal.seek(page_size, os.SEEK_CUR)
        if page_number == 1:
            pending.append(page[:PAGE_ONE_READ])
        if commit:
            yield from pending
            pending = []


def _valid_page_size(size: int) -> bool:
    return 512 <= size <= 65536 and size & (size - 1) == 0


def _checksum(order: str, data: bytes, sums: tuple[int, int]) -> tuple[int, int]:
    """SQLite's WAL checksum of *data* (a multiple of 8 bytes), continued from *sums*."""
    s0, s1 = sums
    words = struct.unpack(f"{order}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & _MASK
        s1 = (s1 + words[i + 1] + s0) & _MASK
    return s0, s1


# -- a rollback journal -----------------------------------------------------------------
def _journal_page_one(path: str) -> bytes | None:
    """The page 1 that rolling back the journal beside *path* would restore, if it holds one.

    The first segment only: page 1 carries the change counter, so a transaction that
    writes anything journals it first.
    """
    with _open_regular(f"{path}-journal", side=True) as journal:
        if journal is None:
            return None
        header = journal.read(28)
        if len(header) < 28 or not header.startswith(JOURNAL_MAGIC):
            return None  # empty, or zeroed once committed: not hot
        records, nonce, _, sector, page_size = struct.unpack_from(">5I", header, 8)
        if not _valid_page_size(page_size) or not 32 <= sector <= 65536:
            return None
        size = os.fstat(journal.fileno()).st_size
        if records == _MASK:  # written without a sync: as many records as fit
            records = max(0, (size - sector) // (page_size + 8))
        journal.seek(sector)
        for _ in range(records):
            record = journal.read(page_size + 8)
            if len(record) < page_size + 8:
                return None
            page_number = struct.unpack_from(">I", record)[0]
            page = record[4 : 4 + page_size]
            if struct.unpack_from(">I", record, 4 + page_size)[0] != _journal_checksum(nonce, page):
                return None  # where SQLite's playback stops
            if page_number == 1:
                return page[:PAGE_ONE_READ]
    return None


def _journal_checksum(nonce: int, page: bytes) -> int:
    total = nonce
    for i in range(len(page) - 200, 0, -200):
        total += page[i]
    return total & _MASK
