"""Notebook 13 (raw sockets and ICMP): the Internet checksum (RFC 1071), no privileges needed."""
from __future__ import annotations

import struct

from ..servers import _checksum
from .core import Case, Exercise, Fail


def reference(data: bytes) -> int:
    """The right answer, from the checksum socklab's own ``ping()`` uses (no solution lives here)."""
    return _checksum(bytes(data))


# Typical mistakes, each as the function it computes: recognised to name the mistake.
def _no_complement(data):
    return ~reference(data) & 0xFFFF


def _little_endian(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"<{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _no_fold(data):
    if len(data) % 2:
        data += b"\0"
    return ~sum(struct.unpack(f"!{len(data) // 2}H", data)) & 0xFFFF


def _drop_odd(data):
    return reference(data[:len(data) - len(data) % 2])


def _pad_left(data):
    if len(data) % 2:
        data = data[:-1] + b"\0" + data[-1:]
    return reference(data)


def _fold_once(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


MISTAKES = [
    (_no_complement, "you return the folded sum itself; the checksum is its one's complement: "
                     "~total & 0xFFFF."),
    (_little_endian, "you read the 16-bit words little-endian; network byte order is big-endian "
                     "(struct format '!H', or data[i] << 8 | data[i + 1])."),
    (_no_fold, "the carries above 16 bits are thrown away (& 0xFFFF) instead of added back in: "
               "while total >> 16: total = (total & 0xFFFF) + (total >> 16)."),
    (_fold_once, "you fold the carries only once; adding them back can carry again, so fold in a "
                 "loop: while total >> 16: ..."),
    (_drop_odd, "the last byte of an odd-length packet is left out: pad it with a zero byte first "
                "(data + b'\\0')."),
    (_pad_left, "the last byte of an odd-length packet must be the *high* byte of the last word: pad "
                "with b'\\0' after it, not before."),
]


def _judge(ctx, checksum, data, label):
    got = ctx.call(checksum, data, what="your checksum")
    want = reference(data)
    if isinstance(got, bool) or not isinstance(got, int):
        if isinstance(got, (bytes, bytearray)) and len(got) == 2 and int.from_bytes(got, "big") == want:
            raise Fail("you return the checksum as 2 bytes; return it as an int (0..65535); "
                       "struct.pack('!H', c) makes the bytes when you build the packet.")
        raise Fail(f"{label}: your checksum returned {got!r:.40}; return an int from 0 to 65535.")
    if got == want:
        return
    if not 0 <= got <= 0xFFFF:
        raise Fail(f"{label}: your checksum returned {got}, which does not fit in 16 bits: keep "
                   "~total & 0xFFFF (and fold the carries into the low 16 bits first).")
    for fn, why in MISTAKES:
        if fn(data) == got and fn(data) != want:
            raise Fail(f"{label}: got {got:#06x}, expected {want:#06x}: {why}")
    raise Fail(f"{label}: your checksum returned {got:#06x}, expected {want:#06x}.")


ECHO = struct.pack("!BBHHH", 8, 0, 0, 0x1234, 1) + b"socklab-ping-1"


def _case_echo(ctx, checksum):
    _judge(ctx, checksum, ECHO, "an echo request (type 8, id 0x1234, seq 1, 14 bytes of payload)")


def _case_odd(ctx, checksum):
    for data in (b"\x01", b"\x01\x02\x03", ECHO + b"!"):
        _judge(ctx, checksum, data, f"{len(data)} bytes (an odd length)")


def _case_carries(ctx, checksum):
    for data in (b"\xff\xff" * 2, b"\xff\xff" * 1000 + b"\x00\x01", b"\xff\xfe\x00\x02"):
        _judge(ctx, checksum, data, f"{len(data)} bytes of 0xFFFF words (many carries)")


def _case_random(ctx, checksum):
    for _ in range(200):
        n = ctx.rng.randint(0, 1500)
        data = bytes(ctx.rng.getrandbits(8) for _ in range(n))
        _judge(ctx, checksum, data, f"a random packet of {n} bytes")


def _case_verifies(ctx, checksum):
    csum = ctx.call(checksum, ECHO, what="your checksum")
    if not isinstance(csum, int) or isinstance(csum, bool) or not 0 <= csum <= 0xFFFF:
        raise Fail(f"your checksum returned {csum!r:.40}; return an int from 0 to 65535.")
    packet = ECHO[:2] + struct.pack("!H", csum) + ECHO[4:]
    again = ctx.call(checksum, packet, what="your checksum")
    if again != 0:
        raise Fail(f"with its checksum filled in, a packet must check out: checksum(packet) == 0; "
                   f"yours gave {again!r:.20}.")


CHECKSUM = Exercise(
    id="13.1",
    title="checksum",
    names=("checksum",),
    limit=3.0,
    task="""5. **The Internet checksum** *(exercise 13.1, checked below; no privileges needed)*. Write
`checksum(data)`: the checksum of RFC 1071 that ICMP (and IPv4, UDP, TCP) use. Add up `data` as
16-bit big-endian words (pad an odd length with one zero byte at the end), fold every carry above 16
bits back into the low 16 bits, and return the one's complement as an `int` from 0 to 65535. The
check compares it with an echo request, odd lengths, words full of carries and 200 random packets;
and a packet with its checksum filled in must give 0.""",
    hints=[
        "Pad first: `if len(data) % 2: data += b'\\0'`. Then the words: "
        "`struct.unpack(f'!{len(data) // 2}H', data)` ('!' = big-endian, 'H' = 16 bits).",
        "Fold in a loop, because adding a carry back can carry again: "
        "`while total >> 16: total = (total & 0xFFFF) + (total >> 16)`.",
        "The checksum is the one's complement of the folded sum, kept to 16 bits: "
        "`return ~total & 0xFFFF`.",
    ],
    cases=[
        Case("an echo request", _case_echo),
        Case("odd lengths", _case_odd),
        Case("carries", _case_carries),
        Case("200 random packets of 0..1500 bytes", _case_random),
        Case("a packet with its checksum filled in checks out: its checksum is 0", _case_verifies),
    ],
)

EXERCISES = [CHECKSUM]
