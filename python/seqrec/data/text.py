"""Reading text data files line by line, with errors that name the file and line."""

from __future__ import annotations

from pathlib import Path

from seqrec.data.errors import DataFormatError


def read_lines(path: Path) -> list[str]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not part of the first id
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{path}: not a UTF-8 text file ({e})") from None
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise DataFormatError(f"{path}: the file is empty")
    return lines


def parse_int(token: str, path: Path, lineno: int, what: str) -> int:
    try:
        value = int(token)
    except ValueError:
        raise DataFormatError(f"{path}:{lineno}: {what} {token!r} is not an integer") from None
    if value < 0:
        raise DataFormatError(f"{path}:{lineno}: {what} {value} is negative")
    return value
