"""Notebook 13 (raw sockets and ICMP): updating the Internet checksum when one 16-bit word changes
(RFC 1624), as the kernel does to turn an echo request into its reply and a router does to an IPv4
header's TTL. No privileges needed.

The lesson hands over ``internet_checksum`` (so does the plain ``ping.py`` it shows): the exercise
asks for what neither contains, and what only an understanding of one's-complement sums gives.
"""
from __future__ import annotations

import random
import socket
import struct
from dataclasses import dataclass

from ..servers import _checksum
from .core import Case, Exercise, Fail, LearnerRaised
from .peers import plural


def reference(data: bytes) -> int:
    """The checksum of ``data``, as socklab's own ``ping()`` computes it (no solution lives here)."""
    return _checksum(bytes(data))


@dataclass(frozen=True)
class Change:
    """A message of which one 16-bit word (at byte ``at``) changes to ``new``: the learner's
    update_checksum gets (checksum before, old word, new word) and must return the checksum after,
    the same as a full recomputation over the changed message."""

    before: bytes
    at: int
    new: int
    what: str = ""    # what the change is, for the feedback ('' for a random message)

    @property
    def old(self) -> int:
        return int.from_bytes(self.before[self.at:self.at + 2], "big")

    @property
    def after(self) -> bytes:
        return self.before[:self.at] + self.new.to_bytes(2, "big") + self.before[self.at + 2:]

    @property
    def args(self) -> tuple:
        return reference(self.before), self.old, self.new

    @property
    def want(self) -> int:
        return reference(self.after)

    def call(self) -> str:
        c, o, n = self.args
        return f"update_checksum({c:#06x}, {o:#06x}, {n:#06x})"


# ---- typical mistakes, each as the function it computes: named only when it reproduces the
# learner's results on every probe below (and on the case's input), never from one coincidence.

def _fold(total: int) -> int:
    while total >> 16:  # as a learner's loop does it (also for a negative total, as Python shifts)
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _right(c, o, n):
    return ~_fold((~c & 0xFFFF) + (~o & 0xFFFF) + n) & 0xFFFF


def _no_complement(c, o, n):
    return _fold((~c & 0xFFFF) + (~o & 0xFFFF) + n)


def _csum_as_sum(c, o, n):
    return ~_fold(c + (~o & 0xFFFF) + n) & 0xFFFF


def _swapped(c, o, n):
    return ~_fold((~c & 0xFFFF) + o + (~n & 0xFFFF)) & 0xFFFF


def _plain_difference(c, o, n):
    return (c + o - n) & 0xFFFF


def _minus_zero(c, o, n):  # RFC 1141's csum + old + ~new: 0xFFFF where recomputation gives 0
    return _fold(c + o + (~n & 0xFFFF))


def _fold_once(c, o, n):
    total = (~c & 0xFFFF) + (~o & 0xFFFF) + n
    return ~((total & 0xFFFF) + (total >> 16)) & 0xFFFF


def _no_fold(c, o, n):
    return ~((~c & 0xFFFF) + (~o & 0xFFFF) + n) & 0xFFFF


def _python_not(c, o, n):
    return ~_fold(~c + ~o + n) & 0xFFFF


def _python_not_once(c, o, n):  # ~csum or ~old without & 0xFFFF (the same error either way)
    return ~_fold(~c + (~o & 0xFFFF) + n) & 0xFFFF


PYTHON_NOT = ("Python's ~ on an int is not the 16-bit complement: ~x == -x - 1, a negative number. "
              "Keep 16 bits: ~csum & 0xFFFF and ~old & 0xFFFF.")

MISTAKES = [
    (_no_complement, "you return the new sum itself; the checksum is its one's complement: "
                     "return ~total & 0xFFFF."),
    (_csum_as_sum, "you start from csum as if it were the sum; the sum is its complement, "
                   "~csum & 0xFFFF."),
    (_swapped, "you take new out and put old in; it is the other way round: add ~old & 0xFFFF "
               "(takes old out) and new (puts it in)."),
    (_plain_difference, "you add old - new in ordinary arithmetic (& 0xFFFF), which is off by one "
                        "when it carries or borrows: in one's complement a carry out of the top "
                        "comes back in at the bottom. Add ~csum & 0xFFFF, ~old & 0xFFFF and new, "
                        "then fold."),
    (_minus_zero, "you return 0xffff where the changed message's checksum is 0x0000: both are zero "
                  "in one's complement, but a checksum computed over the message is never 0xffff. "
                  "Complement last, as RFC 1624 does: ~(~csum + ~old + new), not csum + old + ~new."),
    (_fold_once, "you fold the carries only once; adding them back can carry again, so fold in a "
                 "loop: while total >> 16: ..."),
    (_no_fold, "the carries above 16 bits are thrown away (& 0xFFFF) instead of added back in: "
               "while total >> 16: total = (total & 0xFFFF) + (total >> 16)."),
    (_python_not, PYTHON_NOT),
    (_python_not_once, PYTHON_NOT),
]


# ---- the messages

def _ipv4_header(ttl: int, ident: int = 0x1C46) -> bytes:
    """An IPv4 header (20 bytes, checksum field 0) of a 40-byte ICMP packet, 192.0.2.1 to
    198.51.100.7 (documentation addresses)."""
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, ident, 0x4000, ttl, 1, 0,
                       socket.inet_aton("192.0.2.1"), socket.inet_aton("198.51.100.7"))


# The lesson's echo request (identifier 0x534C, sequence 1, b"socklab ping"), checksum field 0.
LESSON_ECHO = struct.pack("!BBHHH", 8, 0, 0, 0x534C, 1) + b"socklab ping"
# ICMPv6's checksum covers a pseudo-header: source and destination ::1, length 20, next header 58.
PSEUDO6 = socket.inet_pton(socket.AF_INET6, "::1") * 2 + struct.pack("!I3xB", 20, 58)
LESSON_ECHO6 = PSEUDO6 + struct.pack("!BBHHH", 128, 0, 0, 0x534C, 1) + b"socklab ping"

ECHO_CHANGES = [
    Change(LESSON_ECHO, 0, 0x0000, "the lesson's echo request becomes its reply (type 8 -> 0)"),
    Change(LESSON_ECHO6, len(PSEUDO6), 0x8100,
           "the lesson's ICMPv6 echo request becomes its reply (type 128 -> 129)"),
]

TTL_CHANGES = [Change(_ipv4_header(ttl), 8, (ttl - 1) << 8 | 1,
                      f"a router lowers the TTL {ttl} -> {ttl - 1}") for ttl in (64, 63, 2, 1)] + [
    Change(_ipv4_header(128, 0xFFFF), 8, 127 << 8 | 1, "a router lowers the TTL 128 -> 127"),
]

# Sums that carry twice, results of 0x0000, and words of 0x0000 and 0xffff (the same number in
# one's complement: the checksum does not change).
CARRY_CHANGES = [
    Change(b"\xff\xff\x00\x00", 2, 0x0001, "a change whose sum carries twice"),
    Change(b"\x12\x34\xed\xca\x00\x01", 4, 0x0002, "a change whose sum carries twice"),
    Change(b"\x12\x34\xed\xca", 2, 0xEDCB, "a change after which the checksum is 0x0000"),
    Change(b"\x80\x00\x7f\xfe\x00\x00", 4, 0x0001, "a change after which the checksum is 0x0000"),
    Change(b"\x00\x01\xff\xff", 2, 0x0000, "a word of all ones becomes 0"),
    # The other words sum to 0xffff: an end-around borrow for taking old out gives 0xffff, not 0.
    Change(b"\x00\x01\xff\xff", 0, 0x0000, "a change after which the checksum is 0x0000"),
    Change(b"\xfe\xdc\x00\x00\x00\x10", 2, 0xFFFF, "a word of 0 becomes all ones"),
]


def _random_change(rng: random.Random, low: int = 2, high: int = 1500) -> Change:
    """A random message of low..high bytes with one of its words changed (never an all-zero
    result: its checksum is 0xffff, which no incremental update gives, RFC 1624 section 3)."""
    while True:
        n = rng.randint(low, high)
        data = bytes(rng.getrandbits(8) for _ in range(n))
        ch = Change(data, 2 * rng.randrange(n // 2), rng.getrandbits(16))
        if any(ch.after):
            return ch


# Probes: run only when a result is wrong, to tell whether a typical mistake explains *every*
# result. Between them, each mistake differs from the right answer at least twice, and any two
# mistakes differ somewhere (tests/test_exercises_07_13.py checks both).
_probe_rng = random.Random(1624)
PROBES = ECHO_CHANGES + TTL_CHANGES + CARRY_CHANGES + [
    _random_change(_probe_rng, 2, 64) for _ in range(12)]


# ---- judging

def _value(ctx, update_checksum, ch: Change):
    return ctx.call(update_checksum, *ch.args, what="your update_checksum",
                    why=f"{ch.call()} has only three numbers to add: is a loop's condition "
                        "never false? Fold with while total >> 16: ...")


def _mistake(ctx, update_checksum, ch: Change, got: int) -> str:
    """The typical mistake that gives ``got`` for ``ch`` and the learner's result on every probe;
    '' when none does (then the feedback says only what was returned and what was expected)."""
    candidates = [(fn, why) for fn, why in MISTAKES if fn(*ch.args) == got]
    if not candidates:
        return ""
    results = {}
    for p in PROBES:
        try:
            results[p] = _value(ctx, update_checksum, p)
        except LearnerRaised:
            return ""  # it raises where the mistake would not: not that mistake
    for fn, why in candidates:
        if all(type(results[p]) is int and fn(*p.args) == results[p] for p in PROBES):
            return why[0].upper() + why[1:]
    return ""


def _judge(ctx, update_checksum, changes) -> None:
    for ch in changes:
        got = _value(ctx, update_checksum, ch)
        want = ch.want
        what = f"{ch.what}: " if ch.what else ""
        if isinstance(got, bool) or not isinstance(got, int):
            if (isinstance(got, (bytes, bytearray)) and len(got) == 2
                    and int.from_bytes(got, "big") == want):
                raise Fail("you return the checksum as 2 bytes; return it as an int (0..65535); "
                           "struct.pack('!H', c) makes the bytes when you build the packet.")
            raise Fail(f"{what}{ch.call()} returned {got!r:.40}; return an int from 0 to 65535.")
        if got == want:
            continue
        if got < 0:
            raise Fail(f"{what}{ch.call()} returned {got}, a negative number; a checksum is from 0 "
                       "to 65535.", "In Python ~x is -x - 1, a negative number: return "
                       "~total & 0xFFFF." if got & 0xFFFF == want else "")
        if got > 0xFFFF:
            raise Fail(f"{what}{ch.call()} returned {got:#x}, which does not fit in 16 bits: fold "
                       "the carries into the low 16 bits, then ~total & 0xFFFF.")
        first = f"{what}{ch.call()} returned {got:#06x}, expected {want:#06x}."
        raise Fail(first, _mistake(ctx, update_checksum, ch, got))


def _case_echo(ctx, update_checksum):
    _judge(ctx, update_checksum, ECHO_CHANGES)


def _case_ttl(ctx, update_checksum):
    _judge(ctx, update_checksum, TTL_CHANGES)


def _case_carries(ctx, update_checksum):
    _judge(ctx, update_checksum, CARRY_CHANGES)


def _case_random(ctx, update_checksum):
    changes = []
    for _ in range(200):
        ch = _random_change(ctx.rng)
        changes.append(Change(ch.before, ch.at, ch.new,
                              f"a random message of {plural(len(ch.before), 'byte')}, its word at "
                              f"byte {ch.at} changed"))
    _judge(ctx, update_checksum, changes)


UPDATE_CHECKSUM = Exercise(
    id="13.1",
    title="update_checksum",
    names=("update_checksum",),
    limit=3.0,
    task="""5. **Updating a checksum** *(exercise 13.1, checked below; no privileges needed)*. To answer our
echo request, the kernel changed one 16-bit word (type 8, code 0: `0x0800` became `0x0000`), and
the checksum went from `0x2085` to `0x2885`. That new checksum follows from the old one and the changed
word alone: no need to add the packet up again (Linux does add up its reply, but it did not have to).
Routers do use the shortcut, on every IPv4 header they forward, whose TTL goes down by one. Write
`update_checksum(csum, old, new)`: the checksum of a message after one of its 16-bit words changed
from `old` to `new`, from the old checksum `csum` alone (RFC 1624). Return an `int` from 0 to 65535:
what `internet_checksum` of the changed message would give. The check tries the lesson's echo
replies, TTL updates, changes whose sums carry, and 200 random messages.""",
    hints=[
        "The checksum is the complement of the folded sum, so `~csum & 0xFFFF` is the sum of the "
        "old message. Take `old` out of it, put `new` in, then fold and complement as "
        "`internet_checksum` does.",
        "In one's-complement arithmetic you subtract a word by adding its complement: "
        "`total = (~csum & 0xFFFF) + (~old & 0xFFFF) + new`. The `& 0xFFFF` matters: in Python "
        "`~x` alone is `-x - 1`, a negative number.",
        "Fold in a loop, `while total >> 16: total = (total & 0xFFFF) + (total >> 16)`, then "
        "`return ~total & 0xFFFF`: RFC 1624's `HC' = ~(~HC + ~m + m')`.",
    ],
    cases=[
        Case("the lesson's echo requests become their replies", _case_echo),
        Case("a router lowers the TTL", _case_ttl),
        Case("sums that carry twice, and a checksum of 0x0000", _case_carries),
        Case("200 random messages of 2..1500 bytes, one word changed", _case_random),
    ],
)

EXERCISES = [UPDATE_CHECKSUM]
