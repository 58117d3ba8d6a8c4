"""Reading and writing registry CSV files: UTF-8 (with or without BOM), a checked header row."""

from __future__ import annotations

import codecs
import csv
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, TextIO

Rows = Iterable[tuple[int, dict[str, str]]]
# A row with the wrong number of fields arrives as {BAD_ROW: reason}, so that the importer can
# report it and go on checking the rest of the file.
BAD_ROW = "!row"


class CsvError(Exception):
    """The file cannot be read as a registry CSV; `line` is the physical line (header = 1)."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


def read_rows(path: Path, columns: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, {column: stripped value}) for each non-blank data row.

    Raises CsvError for a bad header, a non-UTF-8 byte or malformed quoting, naming the line.
    """
    with path.open("rb") as raw:
        yield from parse_rows(raw, columns)


def parse_rows(raw: BinaryIO, columns: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.reader(_utf8_lines(raw), strict=True)
    header = _next(reader, 1)
    if header is None:
        raise CsvError(1, f"the file is empty; expected the header {','.join(columns)}")
    names = [name.strip() for name in header]
    _check_header(names, columns)
    start = reader.line_num + 1
    while (fields := _next(reader, start)) is not None:
        line, start = start, reader.line_num + 1
        if not any(f.strip() for f in fields):
            continue  # blank lines and Excel's trailing ",,,," rows
        if len(fields) != len(names):
            reason = f"expected {len(names)} fields, found {len(fields)}"
            if len(fields) > len(names):
                reason += " (a value with a comma needs double quotes)"
            yield line, {BAD_ROW: reason}
            continue
        yield line, {name: value.strip() for name, value in zip(names, fields, strict=True)}


def _next(reader: Iterator[list[str]], line: int) -> list[str] | None:
    try:
        return next(reader)
    except StopIteration:
        return None
    except csv.Error as exc:
        raise CsvError(line, f"malformed CSV ({exc})") from None


def _utf8_lines(raw: BinaryIO) -> Iterator[str]:
    # Decoding line by line (newlines are single bytes in UTF-8) lets a bad byte be reported
    # with its line instead of failing the whole file with a traceback.
    for number, data in enumerate(raw, start=1):
        if number == 1 and data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8) :]
        try:
            yield data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CsvError(
                number,
                f"the file is not UTF-8 (byte 0x{data[exc.start]:02x} at column {exc.start + 1}); "
                "save it as 'CSV UTF-8' (Excel saves GBK by default)",
            ) from None


def _check_header(names: list[str], columns: Sequence[str]) -> None:
    problems = []
    missing = [c for c in columns if c not in names]
    unknown = [n for n in names if n not in columns]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if missing:
        problems.append("missing column " + ", ".join(repr(c) for c in missing))
    if unknown:
        problems.append("unknown column " + ", ".join(repr(n) for n in unknown))
    if repeated:
        problems.append("repeated column " + ", ".join(repr(n) for n in repeated))
    if problems:
        problems.append(f"expected {','.join(columns)}")
        raise CsvError(1, "; ".join(problems))


def row_writer(out: TextIO, columns: Sequence[str]) -> Callable[[Sequence[str]], object]:
    """Write the header row; return the function that writes one data row."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    return writer.writerow
