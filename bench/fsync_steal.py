#!/usr/bin/env python3
"""Machine probe, not a benchmark of intentkit: how much CPU the hypervisor takes ("steal")
while a process does nothing but small writes, each followed by fsync.

On a busy host, steal rises with our own fsync rate, whatever the write size (seen here:
6-15% idle, 39-65% while flushing); on a quiet host it stays near zero even at thousands of
fsyncs per second. Latency percentiles measured while steal is high are the host's, not the
code's; read engine_webhooks' windows with this in mind.

Run: python3 bench/fsync_steal.py [directory]   (default: target/, the benchmarks' disk)
"""
import os
import sys
import time


def cpu_ticks():
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    return fields[7], sum(fields)


def probe(path, size, ops=1500):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    buf = b"x" * size
    steal0, total0 = cpu_ticks()
    start = time.monotonic()
    latencies = []
    try:
        for i in range(ops):
            t = time.monotonic()
            os.write(fd, buf)
            os.fsync(fd)
            latencies.append(time.monotonic() - t)
            if i % 100 == 99:
                os.lseek(fd, 0, os.SEEK_SET)  # reuse the blocks, as a WAL does
    finally:
        os.close(fd)
        os.unlink(path)
    wall = time.monotonic() - start
    steal1, total1 = cpu_ticks()
    latencies.sort()
    steal = 100.0 * (steal1 - steal0) / max(1, total1 - total0)
    print(
        f"{size // 1024:>3} KiB write + fsync: {ops / wall:7.0f}/s, "
        f"p50 {latencies[len(latencies) // 2] * 1e3:.2f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99)] * 1e3:.2f} ms, steal {steal:.0f}%"
    )


def main():
    default = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target")
    directory = sys.argv[1] if len(sys.argv) > 1 else default
    os.makedirs(directory, exist_ok=True)
    steal0, total0 = cpu_ticks()
    time.sleep(2)
    steal1, total1 = cpu_ticks()
    print(f"idle for 2 s: steal {100.0 * (steal1 - steal0) / max(1, total1 - total0):.0f}%")
    path = os.path.join(directory, f"fsync-probe-{os.getpid()}.bin")
    for size in (8 * 1024, 48 * 1024):  # a plain insert's WAL frames; a webhook commit's
        probe(path, size)


if __name__ == "__main__":
    main()
