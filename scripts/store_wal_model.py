#!/usr/bin/env python3
"""WAL frames per commit of the embedded store's layout, and of variants of it (docs/benchmarks.md,
"Tenth round"). A model, not riskwatch: Python's sqlite3 with the store's readings schema, fed as
`scripts/bench.sh` part 2b feeds riskwatch — two connections, each publishing its half of the sites
(interleaved) in site/gauge order, a round's readings stamped with the connection's round
millisecond — with ~270 readings and one journal input per ~190 readings per commit. Frames are
counted from the WAL's growth after a checkpoint; SQLite writes each frame with two calls.

usage: scripts/store_wal_model.py VARIANT[,key=value...] ...
  variants: now (readings keyed (ts, sensor) WITHOUT ROWID, full journal entries), once (journal
  entries of ~24 bytes referring to the rows), rowid_uidx (rowid table + UNIQUE (ts, sensor)),
  rowid_uidx_once, rowid_noidx_once
  keys: per_commit (270), page (16384), commits (400), pergauge_ts (0: one timestamp per round),
  freelist (0; 1: the file pre-grown by 200 MiB of free pages)
"""
import os
import sqlite3
import sys
import tempfile

COLS = ("sensor TEXT NOT NULL, site TEXT NOT NULL, kind TEXT NOT NULL, ts INTEGER NOT NULL, "
        "value REAL, value_json TEXT, unit TEXT NOT NULL, quality INTEGER NOT NULL")


def run(variant="now", **kw):
    with tempfile.TemporaryDirectory() as d:
        return model(os.path.join(d, "model.db"), variant, **kw)


def model(path, variant, per_commit=270, page=16384, commits=400, pergauge_ts=0, freelist=0):
    c = sqlite3.connect(path, isolation_level=None)
    c.execute(f"pragma page_size={page}")
    c.execute("pragma journal_mode=WAL")
    c.execute("pragma wal_autocheckpoint=0")
    if variant in ("now", "once"):
        c.execute(f"CREATE TABLE readings ({COLS}, PRIMARY KEY (ts, sensor)) WITHOUT ROWID")
    elif variant in ("rowid_uidx", "rowid_uidx_once"):
        c.execute(f"CREATE TABLE readings ({COLS})")
        c.execute("CREATE UNIQUE INDEX r_key ON readings (ts, sensor)")
    elif variant == "rowid_noidx_once":
        c.execute(f"CREATE TABLE readings ({COLS})")
    else:
        sys.exit(f"unknown variant {variant}")
    c.execute("CREATE TABLE input_journal (pos INTEGER PRIMARY KEY, body BLOB NOT NULL)")
    if freelist:
        c.execute("CREATE TABLE pad (b BLOB)")
        c.execute("INSERT INTO pad VALUES (zeroblob(200*1024*1024))")
        c.execute("DROP TABLE pad")
    sites = [f"site-{s:03}" for s in range(100)]
    conns = [[(s, f"{s}-wl-{g:02}") for s in sites[k::2] for g in range(100)] for k in range(2)]
    idx = [0, 0]
    ts = [1796644390000, 1796644390003]
    pos = 0

    def take(k):
        i = idx[k]
        site, g = conns[k][i]
        t = ts[k] + (i if pergauge_ts else 0)
        idx[k] += 1
        if idx[k] == len(conns[k]):
            idx[k] = 0
            ts[k] += 120
        return (g, site, "water_level", t, 5.0, None, "m", 2)

    def commit(i):
        nonlocal pos
        c.execute("BEGIN")
        rows = [take(k % 2) for k in range(per_commit)]
        c.executemany("INSERT OR REPLACE INTO readings VALUES (?,?,?,?,?,?,?,?)", rows)
        left = per_commit
        while left > 0:
            m = min(190, left)
            left -= m
            pos += 1
            # A readings input as the journal codec writes it: ~52 bytes per reading.
            body = os.urandom(24) if variant.endswith("once") else os.urandom(m * 52)
            c.execute("INSERT INTO input_journal VALUES (?,?)", (pos, body))
        if i % 300 == 0:  # a saved state prunes the journal
            c.execute("DELETE FROM input_journal WHERE pos <= ?", (pos - 10,))
        c.execute("COMMIT")

    for i in range(400):  # warm up: a table of some depth
        commit(i)
    c.execute("pragma wal_checkpoint(TRUNCATE)")
    for i in range(commits):
        commit(i + 1)
    frames = (os.path.getsize(path + "-wal") - 32) / (page + 24)
    c.close()
    return frames / commits


for v in sys.argv[1:] or ["now"]:
    name, *kv = v.split(",")
    kw = {k: int(x) for k, x in (p.split("=") for p in kv)}
    f = run(name, **kw)
    pc = kw.get("per_commit", 270)
    print(f"{v:40} frames/commit {f:5.2f}  write calls/reading (SQLite alone) {2 * f / pc:.4f}  "
          f"KiB/reading {f * kw.get('page', 16384) / 1024 / pc:.2f}")
