"""multipart/related bodies (RFC 2387), as STOW-RS receives them."""

from __future__ import annotations

from dataclasses import dataclass


#: Longest boundary accepted. RFC 2046 allows 70 characters, but real clients
#: send longer ones (Orthanc's DICOMweb plugin: two UUIDs, 73 characters);
#: anything far beyond that is refused.
MAX_BOUNDARY = 256


class MalformedMultipart(ValueError):
    """The body is not a well-formed multipart body; the message says where."""


@dataclass
class Part:
    """One body part: its headers (lower-case names) and its bytes."""

    headers: dict[str, str]
    content: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


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
    """The parts of ``body``.

    Raises
    ------
    MalformedMultipart
        If a delimiter, a part's headers or the closing delimiter is missing.
    """
    if not boundary:
        raise MalformedMultipart("the boundary parameter is missing")
    if len(boundary) > MAX_BOUNDARY:
        raise MalformedMultipart(f"the boundary parameter is {len(boundary)} characters long; at most {MAX_BOUNDARY} are accepted")
    delimiter = b"--" + boundary.encode("latin-1")
    position = body.find(delimiter)
    if position < 0:
        raise MalformedMultipart("the body does not contain its boundary")
    parts: list[Part] = []
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
        next_delimiter = body.find(b"\r\n" + delimiter, content_start)
        if next_delimiter < 0:
            raise MalformedMultipart(f"part {len(parts) + 1} is not closed by a delimiter")
        parts.append(Part(headers, body[content_start:next_delimiter]))
        if len(parts) > max_parts:
            raise MalformedMultipart(f"more than {max_parts} parts")
        position = next_delimiter + 2
