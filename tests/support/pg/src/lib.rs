//! A throwaway PostgreSQL cluster for tests: `initdb` and `pg_ctl` on a temporary
//! folder and a free port, started once per test process and stopped when the
//! process ends (a watchdog stops it even when tests abort).
//!
//! When PostgreSQL is not installed, [`cluster`] answers `None` and says so once on
//! stderr, and the caller runs its SQLite half only. `PLINTH_PG_BIN` points at the
//! binaries when they are not under `/usr/lib/postgresql/<version>/bin`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The oldest PostgreSQL Plinth supports (`security_invoker` views).
const MIN_VERSION: u32 = 15;

/// A running cluster; lives for the whole test process.
pub struct Cluster {
    port: u16,
    _dir: tempfile::TempDir,
}

static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();
static DATABASES: AtomicU32 = AtomicU32::new(0);

/// The process's cluster, started on first use; `None` when PostgreSQL is absent
/// (said once) or fails to start (said with its log).
pub fn cluster() -> Option<&'static Cluster> {
    CLUSTER
        .get_or_init(|| match Cluster::start() {
            Ok(cluster) => cluster,
            Err(why) => {
                eprintln!("PostgreSQL test cluster: {why}");
                None
            }
        })
        .as_ref()
}

impl Cluster {
    fn start() -> Result<Option<Cluster>, String> {
        let Some(bin) = binaries() else {
            eprintln!(
                "PostgreSQL {MIN_VERSION}+ is not installed: the PostgreSQL half of the tests is skipped \
                 (apt-get install postgresql, or set PLINTH_PG_BIN)"
            );
            return Ok(None);
        };
        let dir = tempfile::Builder::new()
            .prefix("plinth-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        let as_root = is_root();
        if as_root {
            // initdb refuses root: the cluster belongs to the postgres user.
            run(Command::new("chown").arg("postgres:").arg(dir.path()))?;
        }
        let user_cmd = |program: &str| {
            let path = bin.join(program);
            if as_root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(path);
                c
            } else {
                Command::new(path)
            }
        };
        run(user_cmd("initdb")
            .args([
                "-A",
                "trust",
                "--no-sync",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "-D",
            ])
            .arg(&data))?;
        let port = free_port()?;
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=300",
            dir.path().display()
        );
        let log = dir.path().join("server.log");
        let started = run(user_cmd("pg_ctl")
            .args(["-w", "-t", "30", "-D"])
            .arg(&data)
            .args(["-l"])
            .arg(&log)
            .args(["-o", &options, "start"]));
        if let Err(why) = started {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!("pg_ctl start failed: {why}\n{log}"));
        }
        watchdog(&bin, &data, as_root);
        Ok(Some(Cluster { port, _dir: dir }))
    }

    /// The URL of the `postgres` superuser's maintenance database.
    pub fn admin_url(&self) -> String {
        self.url("postgres")
    }

    /// The URL of database `name` as the superuser.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// The URL of database `name` as role `user` (the cluster trusts local users).
    pub fn url_as(&self, user: &str, name: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{name}", self.port)
    }

    /// A name for a fresh database of this process (the caller creates it).
    pub fn unique_name(&self, prefix: &str) -> String {
        format!(
            "{prefix}_{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// The newest installed binaries of a supported version.
fn binaries() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("PLINTH_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|v| *v >= MIN_VERSION)
        .collect();
    versions.sort_unstable();
    let bin = PathBuf::from(format!("/usr/lib/postgresql/{}/bin", versions.pop()?));
    bin.join("initdb").exists().then_some(bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

/// Stops the cluster once this process is gone, however it ends (statics are
/// never dropped, and an aborted test run skips destructors).
fn watchdog(bin: &Path, data: &Path, as_root: bool) {
    let stop = format!(
        "{} {} -D {} -m immediate stop",
        if as_root { "runuser -u postgres --" } else { "" },
        bin.join("pg_ctl").display(),
        data.display()
    );
    let dir = data.parent().map(Path::to_path_buf).unwrap_or_default();
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        dir = dir.display()
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}
