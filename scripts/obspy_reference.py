#!/usr/bin/env python3
"""Reference values for the Butterworth pre-filter and network coincidence tests.

Writes rules/tests/data/obspy_reference.json, read by rules/tests/obspy_reference.rs. The Rust
tests do not need Python; run this only to regenerate or check the numbers:

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install obspy
    /tmp/venv/bin/python scripts/obspy_reference.py > rules/tests/data/obspy_reference.json

Produced with ObsPy 1.5.1, SciPy 1.17.1, NumPy 2.4.6 (Python 3).

The signals are built from integer LCG noise and exact float operations, so the Rust test
rebuilds bit-identical inputs (see `lcg_noise` there).
"""

import json
import sys

import numpy as np
import obspy
import scipy
from obspy import Stream, Trace, UTCDateTime
from obspy.signal.filter import bandpass, highpass, lowpass
from obspy.signal.trigger import coincidence_trigger
from scipy.signal import iirfilter

RATE = 100.0


def lcg_noise(seed, n):
    """n uniform samples in [-0.5, 0.5): a 64-bit LCG (Knuth's MMIX constants)."""
    out = np.empty(n)
    s = seed
    for i in range(n):
        s = (s * 6364136223846793005 + 1442695040888963407) % 2**64
        out[i] = (s >> 11) / 2**53 - 0.5
    return out


def burst_record(seed, n, onset, length, amp):
    """Noise, multiplied by `amp` over [onset, onset + length) (an arrival), plus 0.25 offset."""
    x = lcg_noise(seed, n)
    for i in range(onset, min(onset + length, n)):
        x[i] = x[i] * amp
    return x + 0.25


# Each case: (name, ObsPy function, keyword arguments). `every` thins the stored output.
FILTER_CASES = [
    ("bandpass_1_20_c4", "bandpass", dict(freqmin=1.0, freqmax=20.0, corners=4)),
    ("bandpass_10_20_c4", "bandpass", dict(freqmin=10.0, freqmax=20.0, corners=4)),
    ("bandpass_0.1_10_c3", "bandpass", dict(freqmin=0.1, freqmax=10.0, corners=3)),
    ("bandpass_2_8_c1", "bandpass", dict(freqmin=2.0, freqmax=8.0, corners=1)),
    ("highpass_1_c2", "highpass", dict(freq=1.0, corners=2)),
    ("highpass_0.5_c5", "highpass", dict(freq=0.5, corners=5)),
    ("lowpass_5_c3", "lowpass", dict(freq=5.0, corners=3)),
    ("lowpass_25_c4", "lowpass", dict(freq=25.0, corners=4)),
]
FUNCS = {"bandpass": bandpass, "highpass": highpass, "lowpass": lowpass}


def sos_of(func, kw):
    fe = 0.5 * RATE
    if func == "bandpass":
        wn, btype = [kw["freqmin"] / fe, kw["freqmax"] / fe], "band"
    else:
        wn, btype = kw["freq"] / fe, func.replace("pass", "")
    return iirfilter(kw["corners"], wn, btype=btype, ftype="butter", output="sos")


def filter_cases():
    signal = burst_record(11, 3000, 1200, 500, 20.0)
    cases = []
    for name, func, kw in FILTER_CASES:
        causal = FUNCS[func](signal, df=RATE, zerophase=False, **kw)
        zerophase = FUNCS[func](signal, df=RATE, zerophase=True, **kw)
        cases.append({
            "name": name,
            "type": func,
            **kw,
            "sos": sos_of(func, kw).tolist(),
            "every": 7,
            "causal": causal[::7].tolist(),
            "zerophase": zerophase[::7].tolist(),
        })
    return {"seed": 11, "n": 3000, "onset": 1200, "length": 500, "amp": 20.0, "cases": cases}


# A small network: an arrival crosses stations A..E with moveout; E is a half-weight station;
# D also has a lone burst of its own (a kicked sensor) later, which must not make an event.
STATIONS = [
    # (station, seed, onset, amp, weight)
    ("A", 21, 2000, 30.0, 1.0),
    ("B", 22, 2150, 25.0, 1.0),
    ("C", 23, 2330, 20.0, 1.0),
    ("D", 24, 2600, 15.0, 1.0),
    ("E", 25, 2420, 25.0, 0.5),
]
COINCIDENCE = dict(
    n=6000, length=400, freqmin=10.0, freqmax=20.0, corners=4, sta=0.5, lta=10.0,
    thr_on=3.5, thr_off=1.0, thr_coincidence_sum=3.0, trigger_off_extension=0.5,
    max_trigger_length=30.0, lone_seed=26, lone_onset=4800, lone_amp=30.0,
)


def network_stream():
    c = COINCIDENCE
    traces = []
    for sta, seed, onset, amp, _ in STATIONS:
        x = burst_record(seed, c["n"], onset, c["length"], amp)
        if sta == "D":
            lone = burst_record(c["lone_seed"], c["n"], c["lone_onset"], c["length"], c["lone_amp"])
            x = x + lone
        traces.append(Trace(data=x, header={"network": "XX", "station": sta, "channel": "HHZ",
                                            "sampling_rate": RATE, "starttime": UTCDateTime(0)}))
    return Stream(traces)


def coincidence_case():
    c = COINCIDENCE
    st = network_stream()
    st.filter("bandpass", freqmin=c["freqmin"], freqmax=c["freqmax"], corners=c["corners"])
    weights = {f"XX.{sta}..HHZ": w for sta, _, _, _, w in STATIONS}
    events = coincidence_trigger(
        "recstalta", c["thr_on"], c["thr_off"], st, c["thr_coincidence_sum"], trace_ids=weights,
        max_trigger_length=c["max_trigger_length"], trigger_off_extension=c["trigger_off_extension"],
        details=True, sta=c["sta"], lta=c["lta"])
    out = []
    for e in events:
        out.append({
            "time": e["time"].timestamp,
            "duration": e["duration"],
            "stations": e["stations"],
            "trace_ids": e["trace_ids"],
            "coincidence_sum": e["coincidence_sum"],
            "cft_peak_wmean": float(e["cft_peak_wmean"]),
            "cft_std_wmean": float(e["cft_std_wmean"]),
        })
    # The same without the extension and with a lower sum, to exercise both.
    st2 = network_stream()
    st2.filter("bandpass", freqmin=c["freqmin"], freqmax=c["freqmax"], corners=c["corners"])
    plain = coincidence_trigger(
        "recstalta", c["thr_on"], c["thr_off"], st2, 1.0, trace_ids=weights,
        max_trigger_length=c["max_trigger_length"], sta=c["sta"], lta=c["lta"])
    plain_out = [{"time": e["time"].timestamp, "duration": e["duration"], "stations": e["stations"],
                  "coincidence_sum": e["coincidence_sum"]} for e in plain]
    return {
        **c,
        "stations": [{"station": s, "seed": seed, "onset": o, "amp": a, "weight": w}
                     for s, seed, o, a, w in STATIONS],
        "events": out,
        "events_sum1_no_extension": plain_out,
    }


def main():
    json.dump({
        "produced_by": "scripts/obspy_reference.py",
        "versions": {"obspy": obspy.__version__, "scipy": scipy.__version__, "numpy": np.__version__},
        "rate_hz": RATE,
        "filters": filter_cases(),
        "coincidence": coincidence_case(),
    }, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
