#!/usr/bin/env python3
"""Writes the replay test fixture: a SYNTHETIC four-station flood (hourly levels, July 2020),
shaped loosely on the 2020 mid/lower Yangtze wave, in hydrological-yearbook layout
(station,time,level; Beijing time), plus the alert timeline the fixture's rules must give,
computed here independently of riskwatch (threshold ladder, deadband, on/off-delay in samples).

    python3 tests/data/replay/make_flood.py   # rewrites levels.csv and expected-timeline.csv

Not observed data. Thresholds are illustrative (see registry.toml)."""
import csv, math, os
from datetime import datetime, timedelta, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
CST = timezone(timedelta(hours=8))
START = datetime(2020, 7, 1, tzinfo=CST)
HOURS = 24 * 24 + 1

# station: (base, peak, crest hour, rise width h, recession width h, thresholds)
STATIONS = {
    "hankou":   (25.20, 28.77, 12 * 24 - 1, 110.0, 150.0, dict(warning=27.30, guaranteed=28.50, record=29.73)),
    "jiujiang": (18.60, 21.10, 11 * 24 + 6, 100.0, 140.0, dict(warning=20.00, guaranteed=22.00, record=23.03)),
    "nanjing":  (7.60, 10.05, 14 * 24 + 4, 120.0, 170.0, dict(warning=8.70, guaranteed=10.60, record=10.22 + 0.5)),
    # A tributary gauge with a short, modest rise: blue only, no incident was logged there.
    "datang":   (42.00, 43.70, 6 * 24 + 12, 30.0, 40.0, dict(warning=44.00, guaranteed=45.50, record=46.80)),
}
DEADBAND, ON, OFF = 0.05, 2, 2
LEVELS = ["blue", "yellow", "orange", "red"]


def level_at(base, peak, crest, w1, w2, h):
    w = w1 if h < crest else w2
    return round(base + (peak - base) * math.exp(-(((h - crest) / w) ** 2)), 2)


def ladder(values, th):
    thresholds = [th["warning"] - 0.5, th["warning"], th["guaranteed"], th["record"]]
    level, streaks, down, events = None, [0, 0, 0, 0], 0, []
    for h, v in enumerate(values):
        target = None
        for i, t in enumerate(thresholds):
            streaks[i] = streaks[i] + 1 if v >= t else 0
            if streaks[i] >= ON:
                target = i
        if level is not None:
            for i in range(level, -1, -1):
                if v >= thresholds[i] - DEADBAND:
                    target = i if target is None else max(target, i)
                    break
        if (target if target is not None else -1) < level if level is not None else False:
            down += 1
            if down < OFF:
                continue
        down = 0
        if target == level:
            continue
        if level is None:
            change = "raised"
        elif target is None:
            change = "cleared"
        elif target > level:
            change = "escalated"
        else:
            change = "de_escalated"
        shown = LEVELS[target] if target is not None else LEVELS[level]
        events.append((h, change, shown))
        level = target
    return events


def main():
    rows, expected = [], []
    for st, (base, peak, crest, w1, w2, th) in STATIONS.items():
        values = [level_at(base, peak, crest, w1, w2, h) for h in range(HOURS)]
        rows += [(st, (START + timedelta(hours=h)).strftime("%Y-%m-%d %H:%M"), f"{v:.2f}") for h, v in enumerate(values)]
        expected += [((START + timedelta(hours=h)).isoformat(), f"{st}-wl", change, lvl) for h, change, lvl in ladder(values, th)]
    with open(os.path.join(HERE, "levels.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["station", "time", "level"])
        w.writerows(rows)
    expected.sort()
    with open(os.path.join(HERE, "expected-timeline.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["time", "sensor", "change", "level"])
        w.writerows(expected)


if __name__ == "__main__":
    main()
