"""A ``text/event-stream`` parser, following the WHATWG HTML "server-sent events" rules.

Bytes go in (in chunks of any size, split anywhere, even inside a UTF-8 sequence or a
``\\r\\n``), events come out:

- lines end with ``\\r\\n``, ``\\n`` or ``\\r``; a leading BOM is dropped;
- a line starting with ``:`` is a comment (keep-alive) and is ignored;
- ``field: value`` (one space after the colon is dropped; a line without a colon is a
  field with an empty value); ``data`` lines accumulate joined by ``\\n``; ``event`` sets
  the type (default ``message``); ``id`` sets the last event id (kept across events, unless
  it contains NUL); ``retry`` (digits only) sets the reconnection delay in milliseconds;
  other fields are ignored;
- a line, or the data of one event, over ``MAX_LINE`` characters raises ``SSEError``;
- a blank line dispatches the event, unless no ``data`` line was seen; an event left
  unterminated when the stream ends is discarded.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["MAX_LINE", "SSEDecoder", "SSEError", "ServerSentEvent"]

#: The longest line, and the most ``data`` of one event, the decoder keeps (characters).
#: The gateway's events are a few hundred bytes; a peer past this is refused, not buffered.
MAX_LINE = 1 << 20
_LINE_END = re.compile(r"\r\n|\r|\n")
#: ``retry:`` values longer than this (milliseconds: over 30,000 years) are taken as 10**15.
_MAX_RETRY_DIGITS = 15


class SSEError(ValueError):
    """The stream broke a limit (a line or an event over ``MAX_LINE``)."""


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str
    id: str | None
    retry: int | None


class SSEDecoder:
    """Incremental decoder: ``feed(chunk)`` returns the events completed by that chunk."""

    def __init__(self) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial: list[str] = []
        self._partial_len = 0
        self._started = False
        self._pending_cr = False
        self._event = ""
        self._data: list[str] = []
        self._data_len = 0
        self._has_data = False
        self._last_id: str | None = None
        self._retry: int | None = None

    @property
    def last_event_id(self) -> str | None:
        return self._last_id

    @property
    def retry(self) -> int | None:
        """The last ``retry:`` value, in milliseconds."""
        return self._retry

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        text = self._text.decode(chunk)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        return list(self._lines_to_events(self._split(text)))

    def _split(self, text: str) -> Iterator[str]:
        if self._pending_cr and text:
            self._pending_cr = False
            if text[0] == "\n":
                # The "\n" of a "\r\n" split across chunks: the line ended at the "\r".
                text = text[1:]
        # Only the new text is scanned; the unfinished line is kept in pieces, so a long
        # line arriving in small chunks costs linear time, and is refused past the limit.
        start = 0
        for match in _LINE_END.finditer(text):
            piece = text[start : match.start()]
            if self._partial:
                self._partial.append(piece)
                line = "".join(self._partial)
                self._partial = []
                self._partial_len = 0
            else:
                line = piece
            if len(line) > MAX_LINE:
                raise SSEError(f"the event stream sent a line longer than {MAX_LINE} characters")
            yield line
            start = match.end()
            if match.group() == "\r" and start == len(text):
                self._pending_cr = True
        rest = text[start:]
        if rest:
            self._partial.append(rest)
            self._partial_len += len(rest)
            if self._partial_len > MAX_LINE:
                raise SSEError(f"the event stream sent a line longer than {MAX_LINE} characters")

    def _lines_to_events(self, lines: Iterable[str]) -> Iterator[ServerSentEvent]:
        for line in lines:
            event = self._line(line)
            if event is not None:
                yield event

    def _line(self, line: str) -> ServerSentEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data_len += len(value) + 1
            if self._data_len > MAX_LINE:
                raise SSEError(f"the event stream sent an event over {MAX_LINE} characters")
            self._data.append(value)
            self._has_data = True
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            # int() refuses over 4,300 digits (a ValueError out of feed()); a delay that long
            # is capped by the client anyway, so it is kept as a merely huge one.
            digits = value.lstrip("0") or "0"
            self._retry = int(digits) if len(digits) <= _MAX_RETRY_DIGITS else 10**_MAX_RETRY_DIGITS
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        event_type = self._event or "message"
        data = "\n".join(self._data)
        has_data = self._has_data
        self._event = ""
        self._data = []
        self._data_len = 0
        self._has_data = False
        if not has_data:
            return None
        return ServerSentEvent(event=event_type, data=data, id=self._last_id, retry=self._retry)
