"""What a client chose, in a log line: quoted, escaped, bounded; and one record is one line."""

from __future__ import annotations

import logging
import sys

from emulator.logsafe import OneLineFormatter, quoted


def test_quoted_values_cannot_break_or_forge_a_line() -> None:
    assert quoted("prov-SN1") == "prov-SN1"  # bare where nothing can be forged: what users grep for
    assert quoted("$aws/things/x/shadow") == "$aws/things/x/shadow"
    assert quoted("a b") == '"a b"' and quoted("a=b") == '"a=b"' and quoted("") == '""'
    assert quoted("a\nb\r\tc") == '"a\\nb\\r\\tc"'
    assert quoted('x" code=AccessDenied y="\\') == '"x\\" code=AccessDenied y=\\"\\\\"'
    # Line and paragraph separators, NEL, format characters, NUL: escapes, never the character itself.
    assert quoted("a\u2028b\u2029c\x85d\u200be\x00") == '"a\\u2028b\\u2029c\\x85d\\u200be\\x00"'
    assert quoted("\U000e0041") == '"\\U000e0041"'
    assert quoted("é-ü") == "é-ü"  # printable text stays readable
    assert quoted(403) == "403"
    long = quoted("x" * 1000)
    assert long == '"' + "x" * 200 + '"...(1000 chars)'
    assert quoted("\n" * 1000).endswith('"...(1000 chars)') and "\n" not in quoted("\n" * 1000)


def test_the_emulator_log_handler_keeps_each_record_on_one_line() -> None:
    formatter = OneLineFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "from a library: %s", ("a\nb",), None)
    assert formatter.format(record) == "WARNING from a library: a\\nb"
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed\nhere", (), sys.exc_info())
    lines = formatter.format(failed).splitlines()
    assert lines[0] == "ERROR failed\\nhere" and lines[1].startswith("Traceback")


def test_the_log_time_is_loggings_own_text() -> None:
    ours, theirs = OneLineFormatter("%(asctime)s %(message)s"), logging.Formatter("%(asctime)s %(message)s")
    for created in (1_764_460_625.0, 1_764_460_625.999, 1_764_460_626.5, 1_764_460_625.25, 1_700_000_000.042):
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
        record.created, record.msecs = created, int((created - int(created)) * 1000)
        assert ours.format(record) == theirs.format(record)
    dated = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
    assert OneLineFormatter("%(asctime)s", datefmt="%H").format(dated) == logging.Formatter(
        "%(asctime)s", datefmt="%H"
    ).format(dated)
