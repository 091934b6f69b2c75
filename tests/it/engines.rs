//! One `cargo test` runs the end-to-end suite on both engines: this test runs
//! the suite's own binary again with `PLINTH_TEST_ENGINE=postgres`, against the
//! PostgreSQL cluster that binary starts for itself (the SQLite half is every
//! other test of this run). Where PostgreSQL is absent it says so once and
//! passes: the SQLite half still ran.

use std::io::Write;
use std::process::Command;

use crate::harness::on_postgres;

#[test]
fn the_whole_suite_passes_on_postgresql() {
    if on_postgres() {
        return;
    }
    if plinth_test_pg::cluster().is_none() {
        return;
    }
    let exe = std::env::current_exe().expect("the test binary");
    // The same selection this run was given, but never this test again.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--test-threads") && !a.starts_with("--format"))
        .collect();
    let out = Command::new(exe)
        .env("PLINTH_TEST_ENGINE", "postgres")
        .args(&filters)
        .args(["--skip", "engines::", "--test-threads", "2"])
        .output()
        .expect("run the suite on PostgreSQL");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .lines()
        .filter(|l| l.starts_with("test result:"))
        .collect::<Vec<_>>()
        .join("\n");
    // Straight to the terminal, past the test harness's capture: CI's log shows
    // the PostgreSQL half's own count.
    let _ = writeln!(std::io::stderr(), "\nend-to-end suite on PostgreSQL: {summary}\n");
    if !out.status.success() {
        let failures: Vec<&str> = stdout.lines().filter(|l| l.ends_with("FAILED")).collect();
        let tail: Vec<&str> = stdout
            .lines()
            .rev()
            .take(80)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        panic!(
            "the suite fails on PostgreSQL:\n{}\n\n{}",
            failures.join("\n"),
            tail.join("\n")
        );
    }
    assert!(summary.contains(" passed"), "{stdout}");
}
