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
- a blank line dispatches the event, unless no ``data`` line was seen; an event left
  unterminated when the stream ends is discarded.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["SSEDecoder", "ServerSentEvent"]


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
        self._buffer = ""
        self._started = False
        self._pending_cr = False
        self._event = ""
        self._data: list[str] = []
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
        buffer = self._buffer + text
        start = 0
        i = 0
        n = len(buffer)
        while i < n:
            ch = buffer[i]
            if ch == "\n" or ch == "\r":
                yield buffer[start:i]
                if ch == "\r":
                    if i + 1 < n:
                        if buffer[i + 1] == "\n":
                            i += 1
                    else:
                        self._pending_cr = True
                start = i + 1
            i += 1
        self._buffer = buffer[start:]

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
            self._data.append(value)
            self._has_data = True
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        event_type = self._event or "message"
        data = "\n".join(self._data)
        has_data = self._has_data
        self._event = ""
        self._data = []
        self._has_data = False
        if not has_data:
            return None
        return ServerSentEvent(event=event_type, data=data, id=self._last_id, retry=self._retry)
