"""Fuzz the result decoders: ``agentdb._core._decode(oid, data, binary)`` for every
supported OID on malformed input. Run through .ci/fuzz.sh.

    python tests/faults/fuzz_decoders.py [--iterations N] [--seed S] [--atheris [libFuzzer args]]

Without ``--atheris``: a pure-Python mutation fuzzer (seeds: valid encodings of edge
values from ``_core._encode`` and the server's text forms; mutations: bit flips, byte
insertions/deletions, truncation, 4-byte length/count fields set to 0, -1, huge or
random, splices). With ``--atheris`` (``pip install atheris``): the same target under
atheris/libFuzzer. A decoder may raise any ``Exception`` except ``SystemError`` (a C
function returned NULL without an exception, or the reverse) and ``MemoryError`` (an
allocation sized from untrusted input); a crash kills the process. The input being
decoded is kept in ``$AGENTDB_FUZZ_LAST`` (default /tmp/agentdb-fuzz-last.bin) so a
crash can be replayed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import struct
import sys
import time
import uuid
from decimal import Decimal

from agentdb import _core

OIDS = [16, 17, 18, 19, 20, 21, 23, 25, 26, 114, 142, 199, 700, 701, 705, 1000, 1001, 1002,
        1003, 1005, 1007, 1009, 1014, 1015, 1016, 1021, 1022, 1028, 1042, 1043, 1082, 1083,
        1114, 1115, 1182, 1183, 1184, 1185, 1186, 1187, 1231, 1266, 1270, 1700, 2950, 2951,
        3802, 3807]

EDGE = {
    16: [True, False], 17: [b"", b"\x00\xff"], 20: [0, -(2**63), 2**63 - 1],
    21: [-(2**15), 2**15 - 1], 23: [-(2**31), 2**31 - 1], 25: ["", "h\u00e9\U0001f600"],
    26: [0, 2**32 - 1], 700: [1.5, float("inf")], 701: [float("nan"), -0.0, 1e308],
    1700: [Decimal("0"), Decimal("-1.000001"), Decimal("1e-1000"), Decimal("NaN"),
           Decimal("123456789012345678901234567890.5")],
    1082: [dt.date(1, 1, 1), dt.date(9999, 12, 31), dt.date(2000, 2, 29)],
    1083: [dt.time(0, 0), dt.time(23, 59, 59, 999999)],
    1114: [dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999)],
    1184: [dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)],
    1186: [dt.timedelta(0), dt.timedelta(days=-999999999), dt.timedelta(days=999999999)],
    2950: [uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)], 3802: [{"a": [1, None]}, []],
    114: [{"k": "v"}], 1007: [[], [1, None, 3], [[1, 2], [3, 4]]], 1009: [["a", None, ""]],
    1231: [[Decimal("1.5")]], 1016: [[2**62]], 1022: [[1.5, float("nan")]],
}
TEXT_SEEDS = [b"", b"0", b"-1", b"t", b"f", b"NaN", b"Infinity", b"-Infinity", b"{}", b"{1,2}",
              b'{"a",NULL,"b\\"c"}', b"{{1,2},{3,4}}", b"[1:2]={1,2}", b"2000-02-29",
              b"infinity", b"-infinity", b"10000-01-01", b"0044-03-15 BC", b"24:00:00",
              b"12:00:00+05:30", b"1 year 2 mons -3 days 04:05:06.789", b"\\x00ff", b"\\000",
              b"1e1000", b"00000000-0000-0000-0000-000000000000", b'{"a": [1, 2]}', b"null",
              b"2020-01-01 00:00:00+00", b"294277-01-09 04:00:54.775807"]


def seeds() -> list[tuple[int, bytes, bool]]:
    out: list[tuple[int, bytes, bool]] = []
    for oid in OIDS:
        for v in EDGE.get(oid, []):
            try:
                data, _fmt = _core._encode(oid, v)
            except Exception:  # noqa: BLE001 - no binary encoder for this pair
                continue
            if data is not None:
                out.append((oid, bytes(data), True))
        for t in TEXT_SEEDS:
            out.append((oid, t, False))
        out.append((oid, b"", True))
    return out


INTERESTING = [0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFF, 0x10000, 2, 3, 6, 16]


def mutate(rng: random.Random, data: bytes, pool: list[tuple[int, bytes, bool]]) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        if op == 0 and b:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            b.insert(rng.randint(0, len(b)), rng.randrange(256))
        elif op == 2 and b:
            del b[rng.randrange(len(b))]
        elif op == 3 and b:
            del b[rng.randint(0, len(b)) :]
        elif op == 4 and len(b) >= 4:  # a length/count/dims field
            i = rng.randrange(0, len(b) - 3)
            b[i : i + 4] = struct.pack(">I", rng.choice(INTERESTING) if rng.random() < 0.8
                                       else rng.getrandbits(32))
        elif op == 5 and len(b) >= 2:
            i = rng.randrange(0, len(b) - 1)
            b[i : i + 2] = struct.pack(">H", rng.choice([0, 0xFFFF, 0x8000, 0x4000, 1000]))
        elif op == 6:
            other = rng.choice(pool)[1]
            cut = rng.randint(0, len(b))
            b = b[:cut] + other[rng.randint(0, len(other)) :]
        else:
            b += bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 8)))
    return bytes(b[:4096])


class Target:
    def __init__(self) -> None:
        path = os.environ.get("AGENTDB_FUZZ_LAST", "/tmp/agentdb-fuzz-last.bin")
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.findings: list[str] = []
        self.raised: dict[str, int] = {}

    def __call__(self, oid: int, data: bytes, binary: bool) -> None:
        rec = struct.pack(">IB", oid, binary) + data
        os.pwrite(self.fd, rec, 0)
        os.ftruncate(self.fd, len(rec))
        try:
            _core._decode(oid, data, binary)
        except (SystemError, MemoryError) as e:
            self.findings.append(f"{type(e).__name__}: {e} for oid={oid} binary={binary} "
                                 f"data={data[:64]!r}")
        except Exception as e:  # noqa: BLE001 - a clear error is the right outcome
            k = type(e).__name__
            self.raised[k] = self.raised.get(k, 0) + 1


def run_random(iterations: int, seed: int) -> int:
    rng = random.Random(seed)
    pool = seeds()
    target = Target()
    t0 = time.monotonic()
    for oid, data, binary in pool:
        target(oid, data, binary)
    for _ in range(iterations):
        oid, data, binary = rng.choice(pool)
        if rng.random() < 0.1:
            oid = rng.choice(OIDS)  # valid bytes of one type decoded as another
        target(oid, mutate(rng, data, pool), binary)
    took = time.monotonic() - t0
    print(f"fuzz (pure-Python mutations, seed {seed}): {iterations} inputs over "
          f"{len(OIDS)} OIDs from {len(pool)} seeds in {took:.1f}s; no crash; "
          f"exceptions raised (fine): {dict(sorted(target.raised.items()))}; "
          f"findings: {len(target.findings)}")
    for f in target.findings[:20]:
        print("  FINDING", f)
    return 1 if target.findings else 0


def run_atheris(argv: list[str]) -> None:
    import atheris

    target = Target()
    pool = seeds()

    def one(buf: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(buf)
        oid = OIDS[fdp.ConsumeIntInRange(0, len(OIDS) - 1)]
        binary = fdp.ConsumeBool()
        if fdp.ConsumeBool():  # start from a valid encoding of the type, then mutate
            cands = [d for o, d, b in pool if o == oid and b == binary] or [b""]
            base = cands[fdp.ConsumeIntInRange(0, len(cands) - 1)]
            rng = random.Random(fdp.ConsumeInt(4))
            data = mutate(rng, base, pool)
        else:
            data = fdp.ConsumeBytes(fdp.remaining_bytes())
        target(oid, data, binary)
        if target.findings:
            raise RuntimeError(target.findings[-1])

    atheris.Setup([sys.argv[0], *argv], one)
    atheris.Fuzz()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=int(os.environ.get("AGENTDB_FUZZ_SEED", "1")))
    ap.add_argument("--atheris", nargs=argparse.REMAINDER, default=None,
                    help="run under atheris; the rest goes to libFuzzer (e.g. -runs=100000)")
    args = ap.parse_args()
    if args.atheris is not None:
        run_atheris(args.atheris)
        return 0
    return run_random(args.iterations, args.seed)


if __name__ == "__main__":
    sys.exit(main())
