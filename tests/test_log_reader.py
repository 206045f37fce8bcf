"""Reading a log incrementally: cursors, partial lines, rotation (.1, .1.gz), copytruncate,
lost predecessors, bounded runs. On the memory target (the reader only uses the seam)."""

from __future__ import annotations

import gzip

from memlogs import LogTarget

from reconciler.uptake.reader import Cursor, LogReader

LOG = "/var/log/nginx/prov.access.log"


def line(n: int) -> bytes:
    return f"127.0.0.1 - - [01/Dec/2026:10:00:{n % 60:02d} +0000] request {n}\n".encode()


def lines(a: int, b: int) -> bytes:
    return b"".join(line(n) for n in range(a, b))


def run(host: LogTarget, cursor: Cursor | None, **kw) -> tuple[bytes, Cursor | None, list]:
    reader = LogReader(host, LOG, cursor, **kw)
    got, last = b"", cursor
    for data, cur in reader.segments():
        got += data
        last = cur
    return got, last, reader.notes


def test_reads_on_from_the_cursor_and_leaves_a_partial_line():
    host = LogTarget()
    host.outside[LOG] = lines(0, 3) + b"127.0.0.1 - - [half a li"
    got, cur, notes = run(host, None)
    assert got == lines(0, 3) and notes == []
    assert cur is not None and cur.offset == len(lines(0, 3))

    host.outside[LOG] += b"ne]\n" + lines(3, 5)
    got, cur2, _ = run(host, cur)
    assert got == b"127.0.0.1 - - [half a line]\n" + lines(3, 5)
    assert run(host, cur2)[0] == b""  # nothing new


def test_rotation_finishes_the_predecessor_first():
    host = LogTarget()
    host.outside[LOG] = lines(0, 10)
    _, cur, _ = run(host, None)
    host.outside[LOG] += lines(10, 12)  # written after the last run, before rotation
    host.outside[LOG + ".1"] = host.outside.pop(LOG)
    host.outside[LOG] = lines(100, 102)

    got, cur, notes = run(host, cur)

    assert got == lines(10, 12) + lines(100, 102) and notes == []
    assert run(host, cur)[0] == b""


def test_rotation_to_a_compressed_predecessor():
    host = LogTarget()
    host.outside[LOG] = lines(0, 10)
    _, cur, _ = run(host, None)
    old = host.outside.pop(LOG) + lines(10, 13) + b"last line without newline"
    host.outside[LOG + ".1.gz"] = gzip.compress(old)
    host.outside[LOG] = lines(200, 201)

    got, _, notes = run(host, cur)

    assert got == lines(10, 13) + b"last line without newline\n" + lines(200, 201)
    assert notes == []


def test_copytruncate_is_noticed():
    host = LogTarget()
    host.outside[LOG] = lines(0, 50)
    _, cur, _ = run(host, None)
    host.outside[LOG + ".1"] = host.outside[LOG] + lines(50, 51)  # copied, then truncated
    host.outside[LOG] = lines(300, 302)

    got, _, notes = run(host, cur)

    assert got == lines(50, 51) + lines(300, 302) and notes == []


def test_truncated_without_a_predecessor_says_what_was_lost():
    host = LogTarget()
    host.outside[LOG] = lines(0, 50)
    _, cur, _ = run(host, None)
    host.outside[LOG] = lines(400, 402)  # truncated, nothing kept

    got, cur, notes = run(host, cur)

    assert got == lines(400, 402)
    assert len(notes) == 1 and "not seen" in notes[0] and str(len(lines(0, 50))) in notes[0]
    assert cur is not None and cur.offset == len(lines(400, 402))


def test_a_predecessor_of_another_log_is_not_mistaken_for_ours():
    host = LogTarget()
    host.outside[LOG] = lines(0, 5)
    _, cur, _ = run(host, None)
    host.outside[LOG + ".1"] = lines(1000, 1010)  # not what the cursor read
    host.outside[LOG] = lines(500, 501)
    got, _, notes = run(host, cur)
    assert got == lines(500, 501) and "not seen" in notes[0]


def test_a_small_log_grows_its_fingerprint():
    host = LogTarget()
    host.outside[LOG] = line(0)
    _, cur, _ = run(host, None)
    assert cur is not None and cur.length == len(line(0))
    host.outside[LOG] += lines(1, 100)
    got, cur, _ = run(host, cur)
    assert got == lines(1, 100) and cur is not None and cur.length == 1024


def test_a_run_reads_at_most_max_bytes_and_the_next_goes_on():
    host = LogTarget()
    host.outside[LOG] = lines(0, 1000)
    got, cur, _ = run(host, None, max_bytes=10_000)
    assert 9_000 < len(got) <= 10_000 and lines(0, 1000).startswith(got)
    rest, _, _ = run(host, cur)
    assert got + rest == lines(0, 1000)


def test_a_missing_log_is_not_an_error_and_a_vanished_one_is_finished():
    host = LogTarget()
    reader = LogReader(host, LOG, None)
    assert list(reader.segments()) == [(b"", None)] and reader.missing and reader.notes == []
    host.outside[LOG] = lines(0, 5)
    _, cur, _ = run(host, None)
    host.outside[LOG] += lines(5, 7)
    host.outside[LOG + ".1"] = host.outside.pop(LOG)  # rotated; nginx has not reopened yet
    got, cur, notes = run(host, cur)
    assert got == lines(5, 7) and cur is None and notes == []


def test_cursor_round_trip():
    cur = Cursor("ab" * 32, 1024, 77)
    assert Cursor.from_dict(cur.to_dict()) == cur


def test_a_run_that_stops_inside_the_predecessor_goes_on_there():
    host = LogTarget()
    host.outside[LOG] = lines(0, 10)
    _, cur, _ = run(host, None)
    host.outside[LOG] += lines(10, 1000)
    host.outside[LOG + ".1"] = host.outside.pop(LOG)
    host.outside[LOG] = lines(5000, 5010)
    first, cur, _ = run(host, cur, max_bytes=20_000)
    rest, cur, notes = run(host, cur)
    assert first + rest == lines(10, 1000) + lines(5000, 5010) and notes == []
