"""huskyai.boundedread: one rule for reading a file given by path (never more than a limit), kept by the photo
reader and the key reader, each with its own errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from huskyai.boundedread import read_at_most
from huskyai.errors import IntegrityError, InvalidImageError
from huskyai.images.decode import read_limited
from huskyai.trust.oms import MAX_KEY_BYTES, read_key


class Unreadable(Exception):
    pass


class TooLarge(Exception):
    pass


def read(path: Path, limit: int) -> bytes:
    with open(path, "rb") as f:
        return read_at_most(f, limit, Unreadable, TooLarge)


def test_a_file_of_the_limit_is_read_whole_and_one_byte_more_is_over_it(tmp_path):
    (tmp_path / "f").write_bytes(b"x" * 10)
    assert read(tmp_path / "f", 10) == b"x" * 10
    with pytest.raises(TooLarge):
        read(tmp_path / "f", 9)


def test_a_failed_read_raises_the_callers_error():
    with open("/proc/self/mem", "rb") as f:  # opens, but its first page is not mapped: reading fails
        with pytest.raises(Unreadable) as err:
            read_at_most(f, 10, Unreadable, TooLarge)
    assert isinstance(err.value.args[0], OSError)


def test_a_photo_larger_than_its_size_said_is_refused_as_a_photo():
    """/proc files say size 0: the size check passes and the read itself finds the file over the limit."""
    assert os.stat("/proc/self/status").st_size == 0
    with pytest.raises(InvalidImageError, match="status: file is over the limit of 0 MB"):
        read_limited("/proc/self/status", max_bytes=10)


def test_the_key_reader_keeps_its_own_errors(tmp_path):
    (tmp_path / "big.pem").write_bytes(b"-" * (MAX_KEY_BYTES + 1))
    with pytest.raises(IntegrityError, match="big.pem: larger than any PEM public key; is it the key file"):
        read_key(tmp_path / "big.pem")
    (tmp_path / "key.pem").write_bytes(b"k" * MAX_KEY_BYTES)
    assert read_key(tmp_path / "key.pem") == b"k" * MAX_KEY_BYTES
    with pytest.raises(IntegrityError, match="cannot read the private key"):
        read_key(tmp_path / "missing.pem", "private key")
    with pytest.raises(IntegrityError, match="cannot read the public key"):
        read_key(tmp_path)  # a folder
