"""What a client chose, made safe for a log line: `quoted(value)`.

Client ids, topics, topic filters, payload fields and error messages that echo them are chosen by whoever
holds a credential (the claim's is public). Logged raw, a newline in a client id writes a second, forged
line (`... RegisterThing accepted client=prov-1 device-SN99999`), and a space forges a field. Every such
value is logged through `quoted`, as logfmt writes values: bare when it cannot be mistaken for anything
else (printable, no space, `"`, `\\` or `=`: `client=prov-SN1`, the form users grep for); otherwise in
double quotes, with `"` and `\\` escaped and every character that is not printable (newlines, other control
characters, Unicode line and paragraph separators, format characters) written as an escape. A value is cut
after `limit` characters (the length is said), so that one line stays one line of bounded size whatever
the client sent. `OneLineFormatter` (the emulator's log handler) escapes what a message still holds that is
not printable, a library's message say: one record, one line.
"""

from __future__ import annotations

import logging
import time

LIMIT = 200  # characters of a value kept in a log line; AWS's client ids and topics are shorter


def quoted(value: object, limit: int = LIMIT) -> str:
    text = value if isinstance(value, str) else str(value)
    size = len(text)
    if size > limit:
        text = text[:limit]
    if text and text.isprintable() and not _NEEDS_QUOTES.intersection(text):
        return text if size <= limit else f'"{text}"...({size} chars)'
    if not (text.isprintable() and '"' not in text and "\\" not in text):
        text = "".join(_ESCAPES.get(ch) or (ch if ch.isprintable() else _escape(ch)) for ch in text)
    return f'"{text}"' if size <= limit else f'"{text}"...({size} chars)'


_NEEDS_QUOTES = frozenset(' "\\=')
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


class OneLineFormatter(logging.Formatter):
    """Each record's message on one line (its traceback, if any, follows as Python prints it).

    `%(asctime)s` is logging's own default text (`2026-11-30 02:17:05,123`), with the part before the
    milliseconds formatted once per second rather than per record (`localtime` and `strftime` per line
    were a tenth of the emulator's logging cost under load)."""

    _second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        if datefmt is not None or self.default_msec_format is None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        kept = self._second  # one tuple: a thread that reads it while another writes sees either
        if kept[0] != second:
            kept = (second, time.strftime(self.default_time_format, self.converter(record.created)))
            self._second = kept
        return self.default_msec_format % (kept[1], record.msecs)

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        if text.isprintable():
            return text
        return "".join(ch if ch.isprintable() else _ESCAPES.get(ch) or _escape(ch) for ch in text)
