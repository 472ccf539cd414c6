//! `riskwatch` runs without transparent huge pages, whatever the system's default: with them,
//! memory handed back and touched again is zeroed 2 MiB at a time, and every rule-state save
//! held the alerts behind it for up to ~150 ms (docs/benchmarks.md, fourteenth round).

mod common;

use common::{free_port, Riskwatch};
use std::process::Command;
use std::time::Duration;

#[test]
fn a_running_pipeline_has_transparent_huge_pages_off() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Command::new(env!("CARGO_BIN_EXE_riskwatch"))
        .args(["bench", "setup", "--sensors", "10", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(setup.status.success(), "{}", String::from_utf8_lossy(&setup.stderr));
    let listen = format!("127.0.0.1:{}", free_port());
    let args = ["run", "--registry", "registry.toml", "--rules", "rules.toml", "--db", "store.db", "--listen", &listen];
    let mut rw = Riskwatch::spawn(&args, dir.path());
    rw.wait_for_line("riskwatch ready", Duration::from_secs(60));
    let status = std::fs::read_to_string(format!("/proc/{}/status", rw.child.id())).unwrap();
    // Kernels since 6.x show the flag; older ones do not, and there is nothing to check.
    if let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) {
        assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
    }
    let (code, _) = rw.interrupt(Duration::from_secs(30));
    assert_eq!(code, 0);
}
