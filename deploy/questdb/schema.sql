-- riskwatch tables in QuestDB (docs/questdb.md explains every choice).
--
-- Applied by the one-shot `questdb-init` service of docker-compose.yml through QuestDB's /exec
-- HTTP endpoint, one statement per request: keep every statement ending in ';' and keep
-- comments on '--' lines (the init script strips them and splits on ';').
--
-- Table and column names are the ones `riskwatch sink` writes over ILP
-- (sinks/src/questdb.rs); rename nothing here without changing the sink.
-- Tables must exist before the sink's first write: ILP would otherwise auto-create them with a
-- designated timestamp called `timestamp`, no dedup and no retention.
--
-- `riskwatch sink` embeds this file (sinks/src/questdb_tables.rs): at start-up it creates the
-- tables that are missing (`[questdb] tables = "create"`, the default) and refuses to start
-- when one exists without its designated timestamp or dedup keys, naming the fix.
--
-- UNTESTED HERE: the test suite has no QuestDB (victoria-metrics stands in for its line
-- protocol), so this DDL is checked only by reading it against QuestDB 8.2 documentation.

-- Scalar readings: water level, gas concentration, pressure, temperature, rainfall, ...
-- Re-delivered readings (at-least-once MQTT/Kafka) replace themselves: key (ts, sensor).
-- Retention: major-hazard-source records must be kept >= 30 days; 90 days gives margin.
CREATE TABLE IF NOT EXISTS readings (
    ts TIMESTAMP,
    site SYMBOL,
    sensor SYMBOL CAPACITY 16384 CACHE,
    kind SYMBOL,
    unit SYMBOL,
    value DOUBLE,
    quality LONG
) TIMESTAMP(ts) PARTITION BY DAY TTL 90 DAYS WAL
DEDUP UPSERT KEYS(ts, sensor);

-- A drill's readings (riskwatch replay --drill): same layout, kept apart from real history.
CREATE TABLE IF NOT EXISTS exercise_readings (
    ts TIMESTAMP,
    site SYMBOL,
    sensor SYMBOL CAPACITY 16384 CACHE,
    kind SYMBOL,
    unit SYMBOL,
    value DOUBLE,
    quality LONG
) TIMESTAMP(ts) PARTITION BY DAY TTL 30 DAYS WAL
DEDUP UPSERT KEYS(ts, sensor);

-- GNSS displacement solutions: cumulative east / north / up from the reference point, mm.
CREATE TABLE IF NOT EXISTS gnss_readings (
    ts TIMESTAMP,
    site SYMBOL,
    sensor SYMBOL CAPACITY 4096 CACHE,
    kind SYMBOL,
    unit SYMBOL,
    e DOUBLE,
    n DOUBLE,
    u DOUBLE,
    quality LONG
) TIMESTAMP(ts) PARTITION BY DAY TTL 90 DAYS WAL
DEDUP UPSERT KEYS(ts, sensor);

-- Strong-motion waveform packets, stored as their summary: peak vector acceleration, samples
-- per channel and sampling rate (the raw samples stay on the Kafka readings topic, 30 days).
CREATE TABLE IF NOT EXISTS waveform_packets (
    ts TIMESTAMP,
    site SYMBOL,
    sensor SYMBOL CAPACITY 4096 CACHE,
    kind SYMBOL,
    unit SYMBOL,
    peak DOUBLE,
    samples LONG,
    rate_hz DOUBLE,
    quality LONG
) TIMESTAMP(ts) PARTITION BY DAY TTL 90 DAYS WAL
DEDUP UPSERT KEYS(ts, sensor);

-- A drill's GNSS solutions and waveform packets: same layouts, kept apart like exercise_readings.
CREATE TABLE IF NOT EXISTS exercise_gnss_readings (
    ts TIMESTAMP,
    site SYMBOL,
    sensor SYMBOL CAPACITY 4096 CACHE,
    kind SYMBOL,
    unit SYMBOL,
    e DOUBLE,
    n DOUBLE,
    u DOUBLE,
    quality LONG
) TIMESTAMP(ts) PARTITION BY DAY TTL 30 DAYS WAL
DEDUP UPSERT KEYS(ts, sensor);

CREATE TABLE IF NOT EXISTS exercise_waveform_packets (
    ts TIMESTAMP,
    site SYMBOL,
    sensor SYMBOL CAPACITY 4096 CACHE,
    kind SYMBOL,
    unit SYMBOL,
    peak DOUBLE,
    samples LONG,
    rate_hz DOUBLE,
    quality LONG
) TIMESTAMP(ts) PARTITION BY DAY TTL 30 DAYS WAL
DEDUP UPSERT KEYS(ts, sensor);

-- Alert events: one row per change of an alert (raised, escalated, de_escalated, cleared,
-- acknowledged, assigned, resolved, reminder). An event is identified by (alert_id, seq);
-- event_id = '{alert_id}-{seq}'. A re-emitted event (rules worker crash, sink re-read)
-- replaces itself: key (ts, alert_id, seq).
-- Few rows per day, so monthly partitions; kept 2 years (>= 1 year required).
-- alert_id grows with every new alert: a large symbol capacity, and NOCACHE so the symbol
-- table is not held on the heap.
CREATE TABLE IF NOT EXISTS alert_events (
    ts TIMESTAMP,
    alert_id SYMBOL CAPACITY 65536 NOCACHE,
    seq LONG,
    event_id VARCHAR,
    rule_id SYMBOL,
    site SYMBOL,
    subject SYMBOL CAPACITY 16384 CACHE,
    kind SYMBOL,
    change SYMBOL,
    level SYMBOL,
    highest_level SYMBOL,
    exercise BOOLEAN,
    value DOUBLE,
    threshold DOUBLE,
    unit SYMBOL,
    message_zh VARCHAR,
    message_en VARCHAR
) TIMESTAMP(ts) PARTITION BY MONTH TTL 2 YEARS WAL
DEDUP UPSERT KEYS(ts, alert_id, seq);
