//! A full disk under the SQLite store: riskwatch stops with a clear error naming the cause and
//! the store, acknowledges nothing it did not commit, and — once there is space again and it is
//! restarted — has every reading, because Mosquitto re-delivers what was never acknowledged.
//!
//! The disk is a real one: a 1 MiB tmpfs (room for an empty store of 16 KiB pages, not for the
//! readings) mounted in a private mount namespace (`unshare --user --map-root-user --mount`, no
//! root needed), later grown with a remount.

mod common;
mod servers;

use common::Riskwatch;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::gas_plant::{REGISTRY, RULES};

/// Readings published: far more than fit on the small disk.
const N: usize = 4000;

/// The shell run inside the namespace: mount the small disk, run riskwatch until it fails,
/// wait for the test's word, grow the disk, run riskwatch again on the same store.
const SCRIPT: &str = r#"
mount -t tmpfs -o size=1m riskwatch-disk "$DISK" || { echo "cannot mount tmpfs"; exit 90; }
"$RW" run --registry registry.toml --rules rules.toml --db "$DISK/store.db" --broker "$BROKER" 2>&1
echo "first run exited with $?"
while [ ! -e grow ]; do sleep 0.1; done
mount -o remount,size=64m "$DISK" && echo "disk grown"
"$RW" run --registry registry.toml --rules rules.toml --db "$DISK/store.db" --broker "$BROKER" 2>&1 &
echo "second run pid $!"
wait $!
echo "second run exited with $?"
cp "$DISK/store.db" final.db
"#;

/// Kills whatever still runs on the test's disk when the test ends (a failed assertion would
/// otherwise leave the namespace's riskwatch running: killing `unshare` does not reach it).
struct KillOnDrop(String);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("pkill").args(["-KILL", "-f", &self.0]).status();
    }
}

fn reading(i: usize, v: f64) -> String {
    json!({"kind": "gas_combustible", "ts": 1_700_000_000_000_i64 + i as i64 * 1000, "unit": "%LEL", "value": v})
        .to_string()
}

/// Publishes readings `range` at QoS 1 and returns once Mosquitto acknowledged all of them.
async fn publish_all(port: u16, range: std::ops::Range<usize>) {
    let mut o = MqttOptions::new(format!("gw-{}", range.start), "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30)).set_inflight(100);
    let (client, mut el) = AsyncClient::new(o, 200);
    let want = range.len();
    let publisher = tokio::spawn(async move {
        for i in range {
            let v = 5.0 + (i % 10) as f64;
            client
                .publish("riskwatch/v1/readings/plant-a/a-gas-1", QoS::AtLeastOnce, false, reading(i, v))
                .await
                .unwrap();
        }
        client
    });
    let mut acked = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked < want {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, el.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("gateway connection: {e}"),
            Err(_) => panic!("only {acked} of {want} publishes acknowledged by Mosquitto"),
        }
    }
    let _ = publisher.await.unwrap().disconnect().await;
}

/// Distinct readings in the store at `live` (a path SQLite cannot open in place: it resolves
/// /proc/PID/root to our own root), read from a copy of the database and its log in `scratch`.
fn stored(live: &Path, scratch: &Path) -> Result<i64, String> {
    let copy = scratch.join("probe.db");
    for (from, to) in [("store.db", "probe.db"), ("store.db-wal", "probe.db-wal")] {
        let _ = std::fs::remove_file(scratch.join(to));
        std::fs::copy(live.join(from), scratch.join(to)).map_err(|e| format!("copying {from}: {e}"))?;
    }
    let _ = std::fs::remove_file(scratch.join("probe.db-shm"));
    let c = rusqlite::Connection::open(&copy).map_err(|e| e.to_string())?;
    c.query_row("SELECT count(DISTINCT ts) FROM readings", [], |r| r.get(0)).map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_riskwatch_with_a_clear_error_and_a_restart_with_space_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("registry.toml"), REGISTRY).unwrap();
    std::fs::write(d.join("rules.toml"), RULES).unwrap();
    let disk = d.join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let broker = servers::mosquitto(d);

    let mut cmd = Command::new("unshare");
    cmd.args(["--user", "--map-root-user", "--mount", "sh", "-c", SCRIPT])
        .env("RW", env!("CARGO_BIN_EXE_riskwatch"))
        .env("DISK", &disk)
        .env("BROKER", format!("127.0.0.1:{}", broker.port));
    let _cleanup = KillOnDrop(disk.display().to_string());
    let mut ns = Riskwatch::from_command(cmd, d);
    ns.wait_for_line("riskwatch ready", Duration::from_secs(60));

    // A gateway sends far more than the disk holds; riskwatch stops on its own.
    publish_all(broker.port, 0..N).await;
    let exit = ns.wait_for_line("first run exited with", Duration::from_secs(120));
    let first: Vec<String> = ns.seen.clone();
    let text = first.join("\n");
    assert!(!exit.ends_with(" 0"), "a full disk is an error exit: {exit}\n{text}");
    assert!(text.contains("database or disk is full"), "the cause is named:\n{text}");
    assert!(text.contains("store.db"), "the store is named:\n{text}");
    assert!(text.contains("re-delivers"), "the operator is told nothing was acknowledged:\n{text}");
    assert!(!text.contains("panicked"), "no panic:\n{text}");

    // More readings arrive while riskwatch is down: Mosquitto queues them for its session.
    publish_all(broker.port, N..N + 500).await;

    // Space again, and riskwatch restarted on the same store: every reading is there, once.
    std::fs::write(d.join("grow"), "").unwrap();
    ns.wait_for_line("disk grown", Duration::from_secs(30));
    let pid_line = ns.wait_for_line("second run pid", Duration::from_secs(30));
    let pid: u32 = pid_line.rsplit(' ').next().unwrap().parse().unwrap();
    ns.wait_for_line("riskwatch ready", Duration::from_secs(60));
    // The store lives in the namespace's tmpfs; /proc/PID/root shows that process's view.
    let live = Path::new(&format!("/proc/{pid}/root")).join(disk.strip_prefix("/").unwrap());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now = stored(&live, d);
        if now == Ok((N + 500) as i64) {
            break;
        }
        while let Ok(line) = ns.lines.try_recv() {
            ns.seen.push(line);
        }
        assert!(
            Instant::now() < deadline,
            "{now:?} of {} readings stored after the restart; output:\n{}",
            N + 500,
            ns.seen.join("\n") + &broker.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap().success());
    let end = ns.wait_for_line("second run exited with", Duration::from_secs(30));
    assert!(end.ends_with(" 0"), "{end}\n{}", ns.seen.join("\n"));
    let _ = ns.wait_exit(Duration::from_secs(10));
    // The store as riskwatch left it (copied out of the namespace by the script).
    let c = rusqlite::Connection::open(d.join("final.db")).unwrap();
    let (rows, lo, hi): (i64, i64, i64) = c
        .query_row("SELECT count(*), min(ts), max(ts) FROM readings", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap();
    assert_eq!(rows, (N + 500) as i64, "each reading once (a re-delivered one replaces itself)");
    assert_eq!((hi - lo) / 1000 + 1, (N + 500) as i64, "no gap");
}
