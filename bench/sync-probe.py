#!/usr/bin/env python3
"""How long this machine's disk takes to sync small writes, without the gateway.

Writes N pages of 4 KiB to a file in the given directory, syncs it (fsync), and repeats at a fixed
rate for a few seconds; prints the syncs' latency percentiles. At about 1,300 syncs/s of 1 or 10
pages it matches what the SQLite store asks of the disk at 1,000 notifications/s (BENCHMARKS.md §13),
so a sync that takes 100 ms here is one the store would have waited for too.

    python3 bench/sync-probe.py --pages 1 --pages 10 --dir /tmp
"""

import argparse
import os
import tempfile
import time

PAGE = 4096


def probe(directory: str, pages: int, rate: float, seconds: float) -> str:
    handle, path = tempfile.mkstemp(prefix="sync-probe-", dir=directory)
    try:
        page = os.urandom(PAGE)
        latencies = []
        offset = 0
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            for _ in range(pages):
                # Over a 80 MiB region, as a log that is written through and started again.
                os.pwrite(handle, page, (offset % 20_000) * PAGE)
                offset += 1
            began = time.perf_counter()
            os.fsync(handle)
            latencies.append((time.perf_counter() - began) * 1e3)
            pause = start + len(latencies) / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
    finally:
        os.close(handle)
        os.unlink(path)
    latencies.sort()
    n = len(latencies)

    def at(q: float) -> float:
        return latencies[min(n - 1, int(n * q))]

    return (
        f"{pages} page(s) per sync: {n / seconds:.0f} syncs/s, "
        f"{pages * PAGE * n / seconds / 1e6:.1f} MB/s; sync p50 {at(0.5):.2f} p99 {at(0.99):.2f} "
        f"p99.9 {at(0.999):.2f} max {latencies[-1]:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the file goes (the store's disk)")
    parser.add_argument("--pages", type=int, action="append", help="pages per sync (repeatable; default 1 and 10)")
    parser.add_argument("--rate", type=float, default=1300, help="syncs per second")
    parser.add_argument("--seconds", type=float, default=8, help="seconds per run")
    args = parser.parse_args()
    for pages in args.pages or [1, 10]:
        print(probe(args.dir, pages, args.rate, args.seconds), flush=True)


if __name__ == "__main__":
    main()
