#!/usr/bin/env python3
"""Write reference subunit v2 streams for Proctor's interop tests.

Usage: write_streams.py OUTDIR

Writes one ``<case>.subunit`` file per case into OUTDIR. Well-formed packets
come from python-subunit's ``subunit.v2.StreamResultToBytes``; the damaged
ones are those packets cut or altered afterwards, or built by hand (with a
correct CRC) where the writer cannot make them. Each case is decoded by both
python-subunit (decode_json.py) and Proctor, and the results must agree.
"""

import datetime
import io
import os
import struct
import sys
import zlib

from subunit.v2 import StreamResultToBytes

UTC = datetime.timezone.utc
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=UTC)
STATUSES = [None, "exists", "inprogress", "success", "uxsuccess", "skip", "fail", "xfail"]
TEXT_MIME = "text/plain;charset=utf8"


def at(seconds, microseconds=0):
    return EPOCH + datetime.timedelta(seconds=seconds, microseconds=microseconds)


VECTOR_TIME = at(1704164645, 678901)  # 2024-01-02T03:04:05.678901Z


def packets(*calls):
    """Encodes each call's keyword arguments as StreamResultToBytes.status()."""
    out = io.BytesIO()
    writer = StreamResultToBytes(out)
    for kwargs in calls:
        writer.status(**kwargs)
    return out.getvalue()


def number(value, size):
    """A variable-length number in the given form (1-4 bytes)."""
    prefix = {1: 0x00, 2: 0x40, 3: 0x80, 4: 0xC0}[size]
    assert value < 1 << (8 * size - 2)
    return (value | prefix << (8 * size - 8)).to_bytes(size, "big")


def string(text, size=1):
    data = text if isinstance(text, bytes) else text.encode("utf-8")
    return number(len(data), size) + data


def raw_packet(flags, body, length_size=None):
    """A packet built by hand: any flags and body, a correct length and CRC."""
    if length_size is None:
        length_size = next(n for n in (1, 2, 3) if 3 + n + len(body) + 4 < (1 << (8 * n - 2)))
    total = 3 + length_size + len(body) + 4
    data = b"\xb3" + struct.pack(">H", flags) + number(total, length_size) + body
    return data + struct.pack(">I", zlib.crc32(data) & 0xFFFFFFFF)


def hex_bytes(text):
    return bytes.fromhex(text)


# -- the cases ---------------------------------------------------------------


def vector_a():
    data = packets(dict(test_id="foo", test_status="exists"))
    assert data == hex_bytes("b3 29 01 0c 03 66 6f 6f 08 55 5f 1b"), data.hex(" ")
    return data


def vector_b():
    data = packets(
        dict(
            test_id="pkg.test_a",
            test_status="inprogress",
            timestamp=VECTOR_TIME,
            test_tags={"worker-0"},
            route_code="0",
        )
    )
    assert data == hex_bytes(
        "b3 2f 82 27 65 93 7d 25 e8 77 35 08 0a 70 6b 67 2e 74 65 73 74 5f 61"
        "01 08 77 6f 72 6b 65 72 2d 30 01 30 af c7 47 0d"
    ), data.hex(" ")
    return data


def vector_c():
    data = packets(
        dict(
            test_id="pkg.test_a",
            test_status="fail",
            timestamp=VECTOR_TIME,
            file_name="traceback",
            file_bytes=b"boom\n",
            mime_type=TEXT_MIME,
            eof=True,
        )
    )
    assert data == hex_bytes(
        "b3 2b 76 40 44 65 93 7d 25 e8 77 35 08 0a 70 6b 67 2e 74 65 73 74 5f 61"
        "17 74 65 78 74 2f 70 6c 61 69 6e 3b 63 68 61 72 73 65 74 3d 75 74 66 38"
        "09 74 72 61 63 65 62 61 63 6b 05 62 6f 6f 6d 0a 88 31 31 ec"
    ), data.hex(" ")
    return data


def vector_d():
    data = packets(dict(file_name="stdout", file_bytes=b"hi\n", runnable=False))
    assert data == hex_bytes("b3 20 40 13 06 73 74 64 6f 75 74 03 68 69 0a 69 1c cc 3c"), data.hex(
        " "
    )
    return data


def statuses():
    calls = []
    for index, status in enumerate(STATUSES):
        name = status or "none"
        calls.append(dict(test_id="pkg.test_" + name, test_status=status))
        calls.append(
            dict(
                test_id="pkg.fixture_" + name,
                test_status=status,
                runnable=False,
                timestamp=at(1704164645 + index, 1000 * index),
            )
        )
    # Statuses without a test id, as odd producers send them.
    calls.append(dict(test_status="success"))
    calls.append(dict(test_status="fail", runnable=False))
    return packets(*calls)


def attachment_chunks():
    test = "pkg.test_attach"
    binary = bytes(range(256)) + b"\xb3\x00\xb3\n\xb3"
    big = bytes((i * 7) % 256 for i in range(20000))  # a 3-byte length packet
    return packets(
        dict(test_id=test, test_status="inprogress", timestamp=at(1704164645, 1)),
        # A text file in three chunks; the MIME type on the first and last.
        dict(test_id=test, file_name="log", file_bytes=b"first ", mime_type=TEXT_MIME),
        dict(test_id=test, file_name="log", file_bytes="señor ó ".encode()),
        dict(test_id=test, file_name="log", file_bytes=b"last\n", mime_type=TEXT_MIME, eof=True),
        # Binary content with signature bytes, NULs and newlines inside.
        dict(
            test_id=test,
            file_name="core",
            file_bytes=binary,
            mime_type="application/octet-stream",
        ),
        dict(test_id=test, file_name="core", file_bytes=big),
        dict(test_id=test, file_name="core", file_bytes=b"", eof=True),
        # An empty file in one chunk, and packets at the length-form limits.
        dict(test_id=test, file_name="empty", file_bytes=b"", eof=True),
        dict(test_id=test, file_name="x", file_bytes=b"a" * 36, eof=True),  # 62 bytes
        dict(test_id=test, file_name="x", file_bytes=b"a" * 38, eof=True),  # 65 bytes
        dict(test_id=test, file_name="y", file_bytes=b"b" * 16350, eof=True),  # 2-byte limit
        dict(test_id=test, file_name="y", file_bytes=b"b" * 16360, eof=True),  # 3 bytes
        # A final status that carries its traceback in the same packet.
        dict(
            test_id=test,
            test_status="fail",
            file_name="traceback",
            file_bytes=b"Traceback (most recent call last):\n  boom\n",
            mime_type="text/x-traceback;charset=utf8,language=python",
            eof=True,
            timestamp=at(1704164646, 2),
        ),
        # A global attachment, outside any test, routed.
        dict(
            file_name="stderr",
            file_bytes=b"warning: something\n",
            mime_type=TEXT_MIME,
            eof=True,
            runnable=False,
            route_code="1",
        ),
    )


def tags_routes():
    return packets(
        dict(test_id="pkg.test_a", test_status="inprogress", test_tags={"worker-0"}, route_code="0"),
        dict(test_id="pkg.test_a", test_status="success", test_tags={"worker-0"}, route_code="0"),
        dict(test_id="pkg.test_a", test_status="inprogress", route_code="0/3"),
        dict(test_id="pkg.test_a", test_status="fail", route_code="0/3"),
        dict(test_id="pkg.test_b", test_status="skip", test_tags={"c", "a", "b"}, route_code="1/2/3"),
        dict(test_id="pkg.tést_ó", test_status="success", test_tags={"ñ", "日本", "😀"}),
        # Global tag events (no test id), as testtools sends them.
        dict(test_tags={"global", "quick"}, runnable=False),
        dict(test_tags={"only-tag"}),
        dict(test_id="pkg.test_c", test_status="xfail", route_code=""),
        dict(test_id="", test_status="success"),
    )


def timestamps():
    cases = [
        (0, 0),
        (1, 1),  # 1000 ns: 2-byte form
        (1704164645, 16),  # 16000 ns: the largest 2-byte form
        (1704164645, 17),  # 3-byte form
        (1704164645, 4194),  # 4194000 ns: the largest 3-byte form
        (1704164645, 4195),  # 4-byte form
        (1704164645, 678901),
        (1704164645, 999999),
        (4294967295, 999999),  # the last moment the wire can carry (2106)
    ]
    calls = [
        dict(test_id="pkg.test_time_%d" % i, test_status="success", timestamp=at(s, us))
        for i, (s, us) in enumerate(cases)
    ]
    calls.append(dict(file_name="stdout", file_bytes=b"x", timestamp=at(1, 500000)))
    return packets(*calls)


def _three(middle):
    return packets(
        dict(test_id="pkg.before", test_status="success"),
        middle,
        dict(test_id="pkg.after", test_status="success"),
    )


def corrupt_crc():
    before = packets(dict(test_id="pkg.before", test_status="success"))
    middle = bytearray(packets(dict(test_id="pkg.middle", test_status="fail", timestamp=VECTOR_TIME)))
    middle[len(middle) // 2] ^= 0x40  # inside the test id: the CRC no longer matches
    big = bytearray(
        packets(dict(test_id="pkg.big", file_name="log", file_bytes=b"z" * 20000, eof=True))
    )
    big[-10] ^= 0x01  # 3-byte length packet, corrupted in its content
    crc = bytearray(packets(dict(test_id="pkg.crc", test_status="skip")))
    crc[-1] ^= 0xFF  # the stored CRC itself
    after = packets(dict(test_id="pkg.after", test_status="success"))
    return before + bytes(middle) + after + bytes(big) + after + bytes(crc) + after


def text_interleaved():
    a = packets(dict(test_id="pkg.a", test_status="success"))
    b = packets(dict(test_id="pkg.b", test_status="fail"))
    # "ó" is c3 b3: its second byte is the signature, but inside a character.
    return (
        "señor ó\n".encode()
        + a
        + "ó".encode()  # text straight before a packet, no newline
        + b
        + "€ 𝄞 日本語 ₳ 😳 ó\nmore ó".encode()  # ₳ is e2 82 b3, 😳 f0 9f 98 b3
        + a
        + "óóó".encode()
        + b
        + "trailing ó".encode()  # no trailing newline
    )


def text_trailing_newline():
    a = packets(dict(test_id="pkg.a", test_status="success"))
    return b"before\n" + a + "línea ó\n".encode() + a + "fin ó\n".encode()


def text_only():
    return "no packets here: señor ó, € and 𝄞\nsecond line ó\n".encode()


def partial_char_before_packet():
    # A lone c3 makes the next byte part of a character, so the packet's
    # signature is read as text and the packet's bytes stay text.
    a = packets(dict(test_id="pkg.a", test_status="success"))
    return b"text \xc3" + a + b"\n" + a


def invalid_utf8_state():
    # c3 41 is invalid: the reference's decoder errors but keeps c3 buffered,
    # so a9 after the next packet completes "é" there.
    a = packets(dict(test_id="pkg.a", test_status="success"))
    # After ff (an error) a b3 is a signature again; e2 b3 is the start of a
    # character, so that b3 is text.
    # And a lead byte stays buffered through any number of errors: e2 ( a b
    # are three errors, then 82 makes e2 82 a character's start again, so
    # the b3 after it is text (e2 82 b3 is "₳").
    return (
        b"x\xc3A"
        + a
        + b"\xa9 done\n"
        + a
        + b"\xff"
        + a
        + b"\xe2"
        + a
        + b"\n"
        + a
        + b"\xe2(ab\x82"
        + a
        + b"\n"
        + a
        + b"\xf0\x9f\x98"  # the start of U+1F633, whose last byte is b3
        + a
        + b"\n"
        + a
    )


def truncated_surrogate_text():
    # CPython's incremental UTF-8 decoder takes "ed a0" as the start of a
    # character (a surrogate, which no byte completes), so the b3 after it is
    # text; from then on every byte is an error, so the decoder is never mid
    # character again and even the b3 of "ó" starts a packet.
    a = packets(dict(test_id="pkg.a", test_status="success"))
    return (
        b"a\xed\xa0"
        + a
        + b"\n"
        + a
        + "ó".encode()
        + b"\x20\x00\x10"  # the rest of a 16-byte "packet" after the b3 of "ó"
        + b"0123456789ab"
        + b"\n"
        + a
    )


def truncated_body():
    a = packets(dict(test_id="pkg.a", test_status="success"))
    c = packets(
        dict(test_id="pkg.c", test_status="fail", file_name="traceback", file_bytes=b"boom\n" * 5)
    )
    return a + c[:-7]


def truncated_big_body():
    a = packets(dict(test_id="pkg.a", test_status="success"))
    big = packets(dict(test_id="pkg.big", file_name="log", file_bytes=b"z" * 20000, eof=True))
    return a + big[:12345]


def truncated_header():
    a = packets(dict(test_id="pkg.a", test_status="success"))
    return a + a[:3]


def lone_signature():
    a = packets(dict(test_id="pkg.a", test_status="success"))
    return a + b"\xb3"


def garbage_then_packet():
    a = packets(dict(test_id="pkg.a", test_status="success"))
    b = packets(dict(test_id="pkg.b", test_status="success"))
    return a + b"\x00\xffgarbage\x80\xfe\x01" + b"\n" + b + b"\x7f\x80\x81\n"


def bogus_signature_in_text():
    # A 0xb3 in text that is not inside a character starts a "packet": here
    # its claimed length (16) is sane, so it fails its CRC and reading resumes.
    a = packets(dict(test_id="pkg.a", test_status="success"))
    return b"junk \xb3\x20\x00\x10" + b"0123456789ab" + b"more text\n" + a


def four_byte_length():
    a = packets(dict(test_id="pkg.a", test_status="success"))
    return a + b"\xb3\x20\x00\xc0\x00\x00\x10" + a + b"\xb3\x29\x01\xc0\x00\x00" + b"\n" + a


def short_length():
    # A length too small for the packet's own header and CRC but at least 6
    # (the bytes the reference reads before it knows the length): the
    # reference reads `length` bytes, fails the CRC and resumes after them.
    # (Below 6 it would read to the end of the stream and lose it.)
    a = packets(dict(test_id="pkg.a", test_status="success"))
    return (
        b"\xb3\x20\x00\x06AB\n"  # 1-byte length 6
        + a
        + b"\xb3\x20\x00\x07ABC\n"  # 1-byte length 7
        + a
        + b"\xb3\x21\x00\x40\x06AB\n"  # 2-byte length 6
        + a
        + b"\xb3\x20\x10\x40\x08ABCD\n"  # 2-byte length 8
        + a
    )


def bad_strings():
    out = []
    test_id_flags = 0x2000 | 0x0800 | 0x0100 | 0x0003
    file_flags = 0x2000 | 0x0800 | 0x0040 | 0x0010
    bad_ids = [
        b"\xff\xfe",  # not UTF-8
        b"ok\xc3\x28",  # invalid continuation
        b"a\x00b",  # NUL
        b"ab\xc3",  # cut inside the last character: "partially decodable"
        b"ab\xe2\x82",
        b"ab\xf0\x9f\x98",
        b"\xed\xa0\x80",  # a surrogate
        b"ab\xed\xa0",  # the start of one: invalid, not partial
        b"\xf4\x90\x80\x80",  # above U+10FFFF
        b"ab\xf4\x90",
        b"\xe0\x80\xaf",  # overlong
        b"ab\xe0\x80",
        b"\xc0\xaf",
        b"ab\xc1",
        b"ab\xf5",
        b"ab\xf8",
        b"ab\x80",
        "ok 😀".encode(),
        "fine ó".encode(),  # a good one between the bad, to see reading resume
    ]
    for length_size in (1, 2, 3):
        for test_id in bad_ids:
            out.append(raw_packet(test_id_flags, string(test_id), length_size))
        # A string claiming more bytes than the packet holds.
        out.append(raw_packet(test_id_flags, number(40, 1) + b"short", length_size))
        # File content claiming more bytes than the packet holds.
        body = string("pkg.f") + string("log") + number(60, 1) + b"only some bytes"
        out.append(raw_packet(file_flags, body, length_size))
        # A bad tag after good fields, and a bad route code at the very end.
        tags_flags = 0x2000 | 0x0800 | 0x0080 | 0x0400 | 0x0003
        out.append(
            raw_packet(
                tags_flags,
                string("pkg.t") + number(2, 1) + string("good") + string(b"\xc0\xaf") + string("r"),
                length_size,
            )
        )
        out.append(
            raw_packet(
                tags_flags,
                string("pkg.t") + number(1, 1) + string("good") + string(b"r\x00"),
                length_size,
            )
        )
        # The same faults after a large file, so the packet needs a 3-byte length.
        if length_size == 3:
            mime_flags = 0x2000 | 0x0800 | 0x0040 | 0x0020 | 0x0400 | 0x0010
            body = string("pkg.big") + string(b"text/\xff") + string("f") + number(20000, 3)
            out.append(raw_packet(mime_flags, body + b"q" * 20000 + string("0")))
            body = string("pkg.big") + string("text/plain") + string("f") + number(20000, 3)
            out.append(raw_packet(mime_flags, body + b"q" * 20000 + string(b"\xe2\x82")))
    return b"".join(out)


def long_forms():
    # Numbers in longer forms than needed, which the reference accepts, and
    # the reserved flag 0x0008, which it ignores.
    out = []
    flags = 0x2000 | 0x0800 | 0x0200 | 0x0100 | 0x0080 | 0x0400 | 0x0003
    for size in (2, 3, 4):
        body = (
            struct.pack(">I", 1704164645)
            + number(5000, size)
            + string("pkg.long_%d" % size, size)
            + number(1, size)
            + string("tag", size)
            + string("0", size)
        )
        out.append(raw_packet(flags, body, min(size, 3)))
    out.append(raw_packet(0x2000 | 0x0800 | 0x0008 | 0x0005, string("pkg.reserved")))
    # Nanoseconds of a second or more, which the reference carries into seconds.
    for nanos in (1_000_000_000, (1 << 30) - 1):
        body = struct.pack(">I", 1704164645) + number(nanos, 4) + string("pkg.ns_%d" % nanos)
        out.append(raw_packet(0x2000 | 0x0800 | 0x0200 | 0x0003, body))
    # A tags flag with no tags, and a MIME type with no file.
    out.append(raw_packet(0x2000 | 0x0800 | 0x0080 | 0x0003, string("pkg.no_tags") + number(0, 1)))
    out.append(raw_packet(0x2000 | 0x0800 | 0x0020 | 0x0003, string("pkg.mime") + string("text/x")))
    return b"".join(out)


def bad_version():
    # The reference ignores the version bits; Proctor reports the packet as
    # malformed (a documented difference, see SUBUNIT_V2.md).
    a = packets(dict(test_id="pkg.a", test_status="success"))
    wrong = raw_packet(0x1000 | 0x0800 | 0x0100 | 0x0003, string("pkg.v1"))
    return a + wrong + a


def empty():
    return b""


CASES = [
    vector_a,
    vector_b,
    vector_c,
    vector_d,
    statuses,
    attachment_chunks,
    tags_routes,
    timestamps,
    corrupt_crc,
    text_interleaved,
    text_trailing_newline,
    text_only,
    partial_char_before_packet,
    invalid_utf8_state,
    truncated_surrogate_text,
    truncated_body,
    truncated_big_body,
    truncated_header,
    lone_signature,
    garbage_then_packet,
    bogus_signature_in_text,
    four_byte_length,
    short_length,
    bad_strings,
    long_forms,
    bad_version,
    empty,
]


def main(argv):
    if len(argv) != 2:
        sys.exit(__doc__)
    outdir = argv[1]
    os.makedirs(outdir, exist_ok=True)
    for case in CASES:
        with open(os.path.join(outdir, case.__name__ + ".subunit"), "wb") as out:
            out.write(case())


if __name__ == "__main__":
    main(sys.argv)
