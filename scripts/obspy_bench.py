#!/usr/bin/env python3
"""ObsPy's speed on the data of rules/benches/sta_lta.rs, for docs/benchmarks.md §3.

The same 20 M samples (the bench's LCG noise with a burst every 60 s, 100 Hz), filtered with
ObsPy's `bandpass(freqmin=1, freqmax=20, corners=4)` (SciPy sosfilt, compiled) and then
`recursive_sta_lta(nsta=50, nlta=1000)` (ObsPy's C kernel): once in one piece, the way ObsPy is
normally used, and once in 1-s packets of 100 samples carrying the sosfilt state (`zi`) across
packets, the way a live feed would have to use it.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install obspy
    /tmp/venv/bin/python scripts/obspy_bench.py
"""

import time

import numpy as np
from obspy.signal.filter import bandpass
from obspy.signal.trigger import recursive_sta_lta
from scipy.signal import iirfilter, sosfilt

SAMPLES = 20_000_000
RATE = 100.0


def signal():
    # The bench's generator, vectorised: seed_{i+1} = seed_i * A + C (mod 2^64), seed_0 = 42.
    a, c = np.uint64(6364136223846793005), np.uint64(1442695040888963407)
    seeds = np.empty(SAMPLES, dtype=np.uint64)
    s = np.uint64(42)
    block = 1 << 16
    # Powers for a jump-ahead within a block.
    mult = np.empty(block, dtype=np.uint64)
    add = np.empty(block, dtype=np.uint64)
    m, d = np.uint64(1), np.uint64(0)
    with np.errstate(over="ignore"):
        for k in range(block):
            m, d = m * a, d * a + c
            mult[k], add[k] = m, d
        for start in range(0, SAMPLES, block):
            n = min(block, SAMPLES - start)
            seeds[start:start + n] = s * mult[:n] + add[:n]
            s = seeds[start + n - 1]
    noise = (seeds >> np.uint64(11)).astype(np.float64) / float(1 << 53) - 0.5
    burst = np.where(np.arange(SAMPLES) % 6000 < 300, 20.0, 1.0)
    return noise * burst


def best_of(runs, f):
    """Median and best wall time, and median CPU time of this process (the machine may be
    shared; CPU time is what one core spent)."""
    times, cpu = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        f()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    times.sort()
    cpu.sort()
    return times[len(times) // 2], times[0], cpu[len(cpu) // 2]


def main():
    x = signal()
    print(f"data: {SAMPLES} samples, checksum {x.sum():.6f}")

    def whole():
        recursive_sta_lta(bandpass(x, 1.0, 20.0, RATE, corners=4), 50, 1000)

    med, best, cpu = best_of(3, whole)
    print(f"ObsPy bandpass + recursive_sta_lta, one piece:  median {SAMPLES / med / 1e6:6.1f} "
          f"M samples/s, best {SAMPLES / best / 1e6:6.1f}, per CPU-second {SAMPLES / cpu / 1e6:6.1f}")

    def filter_only():
        bandpass(x, 1.0, 20.0, RATE, corners=4)

    med, best, cpu = best_of(3, filter_only)
    print(f"ObsPy bandpass alone, one piece:                median {SAMPLES / med / 1e6:6.1f} "
          f"M samples/s, best {SAMPLES / best / 1e6:6.1f}, per CPU-second {SAMPLES / cpu / 1e6:6.1f}")

    # Packets: sosfilt with carried state; ObsPy's recursive_sta_lta has no streaming state, so
    # only the filter is timed in packets (over the first 2 M samples, scaled).
    sos = iirfilter(4, [1.0 / 50.0, 20.0 / 50.0], btype="band", ftype="butter", output="sos")
    part = x[:2_000_000]

    def packets():
        zi = np.zeros((sos.shape[0], 2))
        for k in range(0, len(part), 100):
            _, zi = sosfilt(sos, part[k:k + 100], zi=zi)

    med, best, cpu = best_of(3, packets)
    print(f"SciPy sosfilt in 100-sample packets:            median {len(part) / med / 1e6:6.1f} "
          f"M samples/s, best {len(part) / best / 1e6:6.1f}, per CPU-second {len(part) / cpu / 1e6:6.1f}")


if __name__ == "__main__":
    main()
