//! The SQLite store's readings: clustered by time (live data lands on the last pages),
//! re-delivered readings stored once, integer rows behind the `readings` view, and stores
//! created by earlier versions (text rows) still written to unchanged.

mod support;

use riskwatch_core::{Quality, Reading, Timestamp, Value};
use riskwatch_sinks::rule_state::{state_path, StateFile, StateRows};
use riskwatch_sinks::sqlite::{Layout, SqliteStore, StoreItem, Synchronous};
use std::sync::Arc;

fn reading(sensor: &str, ts: i64, value: f64) -> Reading {
    let registry = support::registry();
    let s = registry.sensor(sensor).expect("registered");
    Reading {
        sensor: s.id.clone(),
        site: s.site.clone(),
        kind: s.kind.clone(),
        ts: Timestamp(ts),
        value: Value::Scalar(value),
        unit: Arc::clone(&s.unit),
        quality: Quality::Good,
        exercise: false,
    }
}

fn rows(path: &std::path::Path) -> Vec<(i64, f64)> {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut st = c.prepare("SELECT ts, value FROM readings ORDER BY ts").unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

fn write_history(path: &std::path::Path) {
    let mut store = SqliteStore::open(path).unwrap();
    let t0 = 1_780_000_000_000;
    // Live order, a backfilled (older) reading, and a re-delivery with a corrected value.
    store
        .write(&[StoreItem::Readings(vec![
            reading("hankou-wl", t0 + 2000, 27.2),
            reading("hankou-wl", t0 + 3000, 27.3),
        ])])
        .unwrap();
    store.write(&[StoreItem::Readings(vec![reading("hankou-wl", t0, 27.0)])]).unwrap();
    store.write(&[StoreItem::Readings(vec![reading("hankou-wl", t0 + 3000, 27.35)])]).unwrap();
    assert_eq!(rows(path), [(t0, 27.0), (t0 + 2000, 27.2), (t0 + 3000, 27.35)], "{}", path.display());
}

#[test]
fn readings_are_keyed_by_time_then_sensor_and_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    write_history(&path);
    let c = rusqlite::Connection::open(&path).unwrap();
    let pk: Vec<String> = c
        .prepare(
            "SELECT name FROM pragma_index_info((SELECT name FROM pragma_index_list('reading_rows') WHERE origin = 'pk'))",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(pk, ["ts", "sid"], "time-clustered primary key");
}

#[test]
fn a_store_made_by_an_earlier_version_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TABLE readings (
                sensor TEXT NOT NULL, site TEXT NOT NULL, kind TEXT NOT NULL, ts INTEGER NOT NULL,
                value REAL, value_json TEXT, unit TEXT NOT NULL, quality INTEGER NOT NULL,
                PRIMARY KEY (sensor, ts)) WITHOUT ROWID;",
        )
        .unwrap();
    assert_eq!(SqliteStore::open(&path).unwrap().readings_layout(), Layout::TextRows);
    write_history(&path);
    let c = rusqlite::Connection::open(&path).unwrap();
    let sql = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('readings', 'exercise_readings')";
    let tables: i64 = c.query_row(sql, [], |r| r.get(0)).unwrap();
    assert_eq!(tables, 2, "text rows, and the drill's table beside them");
}

#[test]
fn every_commit_is_synced_unless_the_store_is_opened_with_normal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    assert_eq!(SqliteStore::open(&path).unwrap().synchronous().unwrap(), Synchronous::Full);
    let normal = SqliteStore::open_with(&path, Synchronous::Normal).unwrap();
    assert_eq!(normal.synchronous().unwrap(), Synchronous::Normal);
    drop(normal);
    // The setting belongs to the connection, not the file: reopening with the default syncs again.
    assert_eq!(SqliteStore::open(&path).unwrap().synchronous().unwrap(), Synchronous::Full);
}

#[test]
fn the_rule_state_is_saved_as_durably_as_the_store_commits() {
    // A save lets the store delete the journal entries it covers, in a synced commit; were the
    // save itself not synced, a power failure could keep the deletion and lose the save, and
    // the inputs between the two saves with it.
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir.path().join("store.db"));
    let mut state = StateFile::open(&path).unwrap();
    assert_eq!(state.synchronous().unwrap(), Synchronous::Full);
    let rows = StateRows {
        full: true,
        meta: "{}".into(),
        sensors: Box::new(std::iter::once(Ok(("wl-1".into(), "{}".into())))),
    };
    state.save(7, rows).unwrap();
    drop(state);
    let normal = StateFile::open_with(&path, Synchronous::Normal).unwrap();
    assert_eq!(normal.synchronous().unwrap(), Synchronous::Normal);
    let loaded = normal.load().unwrap().expect("the save");
    assert_eq!(loaded.sensors, vec!["{}".to_string()]);
}

#[test]
fn of_readings_with_one_key_in_one_delivery_the_last_is_stored() {
    // A gateway re-sending corrected values within one delivery, out of time order: whatever
    // order the store writes a delivery in, the value sent last for a key is the one kept.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut store = SqliteStore::open(&path).unwrap();
    let t0 = 1_780_000_000_000;
    let mut batch = Vec::new();
    let mut last = std::collections::BTreeMap::new();
    for i in 0..300i64 {
        let ts = t0 + (i * 7919 % 23) * 1000;
        let value = 20.0 + i as f64 / 100.0;
        batch.push(reading("hankou-wl", ts, value));
        last.insert(ts, value);
    }
    store.write(&[StoreItem::Readings(batch)]).unwrap();
    assert_eq!(rows(&path), last.into_iter().collect::<Vec<_>>());
}

fn journal_positions(path: &std::path::Path) -> Vec<i64> {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut st = c.prepare("SELECT pos FROM input_journal ORDER BY pos").unwrap();
    st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

#[test]
fn a_saved_states_journal_entries_go_a_slice_per_commit_and_all_of_them_go() {
    // A state save covers thousands of inputs; deleting them all in one commit held that
    // commit's alerts for tens of milliseconds. They go a bounded slice per commit instead,
    // never one past the saved position, and every one of them goes in the end.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut store = SqliteStore::open(&path).unwrap();
    let inputs: Vec<StoreItem> = (1..=3000).map(|p| StoreItem::Input { position: p, body: vec![7; 40] }).collect();
    store.write(&inputs).unwrap();
    store.write(&[StoreItem::Prune(2500)]).unwrap();
    let after_one = journal_positions(&path);
    assert!(after_one.len() < 3000, "the commit with the prune deleted nothing");
    assert!(after_one.len() >= 3000 - 512, "one commit deleted {} entries at once", 3000 - after_one.len());
    let mut next: u64 = 3001;
    for _ in 0..40 {
        store.write(&[StoreItem::Input { position: next, body: vec![7; 40] }]).unwrap();
        next += 1;
        let left = journal_positions(&path);
        assert!(left.contains(&2501), "an entry past the saved position was deleted");
        if left.first() == Some(&2501) {
            break;
        }
    }
    let left = journal_positions(&path);
    assert_eq!(left.first(), Some(&2501), "entries up to the saved position still there");
    assert_eq!(left.len() as u64, next - 2501);
}

#[test]
fn a_save_whose_sensor_cannot_be_serialised_leaves_the_previous_save_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = StateFile::open(&state_path(&dir.path().join("store.db"))).unwrap();
    let rows = |items: Vec<Result<(String, String), String>>| StateRows {
        full: false,
        meta: "{\"position\":1}".into(),
        sensors: Box::new(items.into_iter()),
    };
    state.save(1, rows(vec![Ok(("wl-1".into(), "\"a\"".into())), Ok(("wl-2".into(), "\"b\"".into()))])).unwrap();
    // The second save's first sensor is written before its second fails to serialise.
    let mut failing = rows(vec![Ok(("wl-1".into(), "\"changed\"".into())), Err("not serialisable".into())]);
    failing.meta = "{\"position\":2}".into();
    let err = state.save(2, failing).unwrap_err();
    assert!(err.to_string().contains("not serialisable"), "{err}");
    let loaded = state.load().unwrap().expect("the first save");
    assert_eq!(loaded.meta, "{\"position\":1}");
    let mut sensors = loaded.sensors;
    sensors.sort();
    assert_eq!(sensors, vec!["\"a\"".to_string(), "\"b\"".to_string()]);
}

fn reading_of(sensor: &str, site: &str, kind: &str, unit: &str, ts: i64, value: f64) -> Reading {
    Reading {
        sensor: sensor.into(),
        site: site.into(),
        kind: riskwatch_core::SensorKind::builtin(kind).expect("a built-in kind"),
        ts: Timestamp(ts),
        value: Value::Scalar(value),
        unit: Arc::from(unit),
        quality: Quality::Good,
        exercise: false,
    }
}

type ViewRow = (String, String, String, i64, Option<f64>, Option<String>, String, i64);

fn view_rows(c: &rusqlite::Connection, view: &str) -> Vec<ViewRow> {
    let sql =
        format!("SELECT sensor, site, kind, ts, value, value_json, unit, quality FROM {view} ORDER BY ts, sensor");
    let mut st = c.prepare(&sql).unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn view_row(r: &Reading) -> ViewRow {
    let (value, json) = match &r.value {
        Value::Scalar(v) => (Some(*v), None),
        other => (None, Some(riskwatch_core::wire::value_json(other))),
    };
    let (sensor, site, kind) = (r.sensor.to_string(), r.site.to_string(), r.kind.as_str().to_string());
    (sensor, site, kind, r.ts.millis(), value, json, r.unit.to_string(), i64::from(r.quality.code()))
}

/// A new store keeps each reading as integers behind the `readings` view, which gives back every
/// column as written; each sensor's name and attributes are stored once; a drill's readings
/// stay in `exercise_readings`; a sensor whose unit changes keeps its history's unit.
#[test]
fn a_new_store_gives_back_every_column_through_the_readings_view() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.readings_layout(), Layout::Compact);
    let t0 = 1_780_000_000_000;
    let gas = reading_of("lel-01", "plant-a", "gas_combustible", "%LEL", t0, 3.0);
    let mut drill = reading_of("lel-01", "plant-a", "gas_combustible", "%LEL", t0 + 1, 12.5);
    drill.exercise = true;
    let mut moved = reading_of("gnss-7", "slope-3", "gnss_displacement", "mm", t0 + 2, 0.0);
    moved.value = Value::Displacement(riskwatch_core::reading::Displacement { e: 1.5, n: -2.0, u: 0.25 });
    moved.quality = Quality::Suspect;
    let mut in_cm = reading("hankou-wl", t0 + 3, 2731.0);
    in_cm.unit = Arc::from("cm");
    let live = [reading("hankou-wl", t0, 27.3), gas, moved.clone()];
    let mut first = live.to_vec();
    first.push(drill.clone());
    store.write(&[StoreItem::Readings(first)]).unwrap();
    let later = [in_cm, reading("hankou-wl", t0 + 4, 27.4)];
    store.write(&[StoreItem::Readings(later.to_vec())]).unwrap();
    // A re-delivery replaces the stored reading.
    moved.value = Value::Displacement(riskwatch_core::reading::Displacement { e: 1.5, n: -2.0, u: 0.5 });
    store.write(&[StoreItem::Readings(vec![moved.clone()])]).unwrap();
    drop(store);

    let c = rusqlite::Connection::open(&path).unwrap();
    let mut expected: Vec<ViewRow> = live.iter().chain(&later).map(view_row).collect();
    expected[2] = view_row(&moved);
    expected.sort_by(|a, b| (a.3, &a.0).cmp(&(b.3, &b.0)));
    assert_eq!(view_rows(&c, "readings"), expected);
    assert_eq!(view_rows(&c, "exercise_readings"), [view_row(&drill)]);
    let count = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(count("SELECT count(*) FROM sensor_names"), 3, "one name per sensor");
    assert_eq!(
        count("SELECT count(*) FROM sensor_attributes"),
        4,
        "m and cm at hankou, the gas detector's, the GNSS point's"
    );
}

/// The ids a failed transaction added are not assumed afterwards: a reading of a sensor first
/// seen in a transaction that did not commit is found through the view once written.
#[test]
fn a_sensor_first_seen_in_a_failed_transaction_is_stored_with_its_name_later() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut store = SqliteStore::open(&path).unwrap();
    let t0 = 1_780_000_000_000;
    // A trigger stands in for a failure (disk full, I/O error) after the sensor's name was added.
    let other = rusqlite::Connection::open(&path).unwrap();
    let fail = format!(
        "CREATE TRIGGER fail BEFORE INSERT ON reading_rows WHEN NEW.ts = {} BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
        t0 + 1
    );
    other.execute_batch(&fail).unwrap();
    let failed =
        store.write(&[StoreItem::Readings(vec![reading("hankou-wl", t0, 27.0), reading("hankou-wl", t0 + 1, 27.1)])]);
    assert!(failed.is_err(), "the trigger fails the transaction");
    other.execute_batch("DROP TRIGGER fail").unwrap();
    store.write(&[StoreItem::Readings(vec![reading("hankou-wl", t0 + 2, 27.2)])]).unwrap();
    assert_eq!(rows(&path), [(t0 + 2, 27.2)], "the reading after the failure is in the view");
}
