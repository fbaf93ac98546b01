"""multipart/related bodies (RFC 2387), as STOW-RS receives them."""

from __future__ import annotations

import mmap
from dataclasses import dataclass


#: Longest boundary accepted. RFC 2046 allows 70 characters, but real clients
#: send longer ones (Orthanc's DICOMweb plugin: two UUIDs, 73 characters);
#: anything far beyond that is refused.
MAX_BOUNDARY = 256


class MalformedMultipart(ValueError):
    """The body is not a well-formed multipart body; the message says where."""


class _Typed:
    headers: dict[str, str]

    @property
    def content_type(self) -> str:
        """The part's media type, lower-case, without parameters."""
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


@dataclass
class Part(_Typed):
    """One body part: its headers (lower-case names) and its bytes."""

    headers: dict[str, str]
    content: bytes


@dataclass
class PartView(_Typed):
    """One body part whose bytes are a view of the body (no copy): for large responses."""

    headers: dict[str, str]
    content: memoryview


def parameters(content_type: str) -> tuple[str, dict[str, str]]:
    """The media type and its parameters (``type``, ``boundary``...)."""
    items = [p.strip() for p in content_type.split(";")]
    params = {}
    for item in items[1:]:
        key, _, value = item.partition("=")
        if key:
            params[key.strip().lower()] = value.strip().strip('"')
    return items[0].lower(), params


def split_parts(body: bytes, boundary: str, max_parts: int = 100_000) -> list[Part]:
    """The parts of ``body``, each a copy.

    Raises
    ------
    MalformedMultipart
        As :func:`part_spans`.
    """
    return [Part(headers, body[start:end]) for headers, start, end in part_spans(body, boundary, max_parts)]


def split_part_views(body: bytes, boundary: str, max_parts: int = 100_000) -> list[PartView]:
    """The parts of ``body``, each a view of it.

    Raises
    ------
    MalformedMultipart
        As :func:`part_spans`.
    """
    whole = memoryview(body)
    return [PartView(headers, whole[start:end]) for headers, start, end in part_spans(body, boundary, max_parts)]


def part_spans(body: bytes | mmap.mmap, boundary: str, max_parts: int = 100_000) -> list[tuple[dict[str, str], int, int]]:
    """Each part of ``body``: its headers (lower-case names), where its content starts and ends.

    Raises
    ------
    MalformedMultipart
        If a delimiter, a part's headers or the closing delimiter is missing.
    """
    if not boundary:
        raise MalformedMultipart("the boundary parameter is missing")
    if len(boundary) > MAX_BOUNDARY:
        raise MalformedMultipart(f"the boundary parameter is {len(boundary)} characters long; at most {MAX_BOUNDARY} are accepted")
    try:
        delimiter = b"--" + boundary.encode("latin-1")
    except UnicodeEncodeError:
        raise MalformedMultipart("the boundary parameter holds characters beyond ISO 8859-1") from None
    position = body.find(delimiter)
    if position < 0:
        raise MalformedMultipart("the body does not contain its boundary")
    parts: list[tuple[dict[str, str], int, int]] = []
    while True:
        position += len(delimiter)
        if body[position : position + 2] == b"--":
            return parts
        line_end = body.find(b"\r\n", position)
        if line_end < 0:
            raise MalformedMultipart("a delimiter line does not end with CRLF")
        position = line_end + 2
        if body[position : position + 2] == b"\r\n":
            headers_end, header_block = position, b""
        else:
            headers_end = body.find(b"\r\n\r\n", position)
            if headers_end < 0:
                raise MalformedMultipart(f"part {len(parts) + 1} has no blank line after its headers")
            header_block = body[position:headers_end]
        headers = {}
        for line in header_block.split(b"\r\n"):
            if not line:
                continue
            name, sep, value = line.partition(b":")
            if not sep:
                raise MalformedMultipart(f"part {len(parts) + 1} has a header line without a colon")
            headers[name.decode("latin-1").strip().lower()] = value.decode("latin-1").strip()
        content_start = headers_end + 4 if header_block else headers_end + 2
        next_delimiter = _declared_end(body, content_start, headers.get("content-length"), delimiter)
        if next_delimiter < 0:
            next_delimiter = body.find(b"\r\n" + delimiter, content_start)
        if next_delimiter < 0:
            raise MalformedMultipart(f"part {len(parts) + 1} is not closed by a delimiter")
        parts.append((headers, content_start, next_delimiter))
        if len(parts) > max_parts:
            raise MalformedMultipart(f"more than {max_parts} parts")
        position = next_delimiter + 2


def _declared_end(body: bytes, start: int, length: str | None, delimiter: bytes) -> int:
    """Where a part ends by its Content-Length, when a delimiter is found just there; else -1 (the
    body is then searched for the delimiter, as when no length is given). Saves scanning large parts."""
    if length is None or not length.isdigit() or len(length) > 15:
        return -1
    end = start + int(length)
    closing_line = b"\r\n" + delimiter
    return end if body[end : end + len(closing_line)] == closing_line else -1


def part_head(boundary: str, headers: dict[str, str]) -> bytes:
    """The delimiter line and header block that open one body part (RFC 2046 5.1.1).

    Header values come from the server itself (media types, URLs built from
    stored UIDs), never from a request; CR and LF are refused all the same.
    """
    lines = [f"--{boundary}"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value:
            raise ValueError(f"a {name} header value may not hold a line break")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def closing(boundary: str) -> bytes:
    """The close delimiter that ends a multipart body (RFC 2046 5.1.1)."""
    return f"--{boundary}--\r\n".encode("latin-1")
