//! Starts the real application on 127.0.0.1:0 over a fresh database in a temporary
//! folder, and stops it gracefully.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use plinth_core::storage::sql::{Row, Sql, ToSql};
use plinth_core::{App, Config, Plugin};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Parameters for [`TestConn`], as `params!` is for the facade (`Sync`, since
/// each statement runs on a thread of its own).
macro_rules! args {
    () => { &[] as &[&(dyn plinth_core::storage::sql::ToSql + Sync)] };
    ($($p:expr),+ $(,)?) => { &[$(&$p as &(dyn plinth_core::storage::sql::ToSql + Sync)),+] as &[&(dyn plinth_core::storage::sql::ToSql + Sync)] };
}

pub struct TestApp {
    pub addr: SocketAddr,
    /// The running app's platform, for what has no HTTP route yet.
    pub platform: plinth_core::Platform,
    pub client: reqwest::Client,
    pub dir: Arc<TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<plinth_core::Result<()>>>,
}

pub struct TestAppBuilder {
    vars: Vec<(String, String)>,
    plugins: Vec<Arc<dyn Plugin>>,
    dir: Option<Arc<TempDir>>,
    migrate: bool,
    demo: bool,
}

impl TestApp {
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            vars: Vec::new(),
            plugins: Vec::new(),
            dir: None,
            migrate: true,
            demo: false,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The OpenAPI document the server serves.
    pub async fn served_spec(&self) -> serde_json::Value {
        self.get("/api/openapi.json").await.json().await.expect("spec")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request")
    }

    pub fn db_path(&self) -> PathBuf {
        db_path(self.dir.path())
    }

    /// The `DATABASE_URL` of the app's database, for the command line.
    pub fn database_url(&self) -> String {
        database_url(self.dir.path())
    }

    /// An unrestricted connection to the app's database (either engine), for
    /// assertions through core's SQL facade.
    pub fn conn(&self) -> TestConn {
        TestConn::open(self.dir.path())
    }

    /// The SQLite file's own connection, for what only SQLite has (pragmas,
    /// `sqlite_master`, query plans); tests calling it run on SQLite only.
    pub fn sqlite(&self) -> rusqlite::Connection {
        assert!(!on_postgres(), "a SQLite-only check ran on PostgreSQL");
        plinth_core::storage::sqlite::db::open_connection(&self.db_path()).expect("open database")
    }

    /// Stops the server gracefully and waits for it; returns the folder so that a
    /// new app can be started on the same database.
    pub async fn stop(mut self) -> Arc<TempDir> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(20), server)
                .await
                .expect("server stops in time")
                .expect("server task")
                .expect("server ran cleanly");
        }
        self.dir.clone()
    }

    /// Starts the shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) -> JoinHandle<plinth_core::Result<()>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.server.take().expect("server running")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The database of a test app through core's facade, on either engine: the
/// methods tests assert with, each one statement (or one transaction) on its own
/// thread (PostgreSQL's synchronous client cannot run on an async test's thread).
pub struct TestConn(plinth_core::storage::db::Db);

impl TestConn {
    pub fn open(dir: &Path) -> Self {
        let config = Config::from_vars(base_vars(dir)).expect("test config");
        TestConn(plinth_core::storage::db::Db::open_root(&config).expect("open database"))
    }

    pub fn engine(&self) -> plinth_core::storage::EngineKind {
        self.0.engine()
    }

    fn run<T: Send>(
        &self,
        f: impl FnOnce(&Sql<'_>) -> plinth_core::Result<T> + Send,
    ) -> plinth_core::Result<T> {
        plinth_core::storage::db::off_runtime(|| self.0.blocking(f))
    }

    pub fn query_row<T: Send>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        f: impl FnOnce(&Row<'_>) -> plinth_core::Result<T> + Send,
    ) -> plinth_core::Result<T> {
        self.run(|c| c.query_one(sql, &unsync(params), f))
    }

    pub fn query_all<T: Send>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        f: impl FnMut(&Row<'_>) -> plinth_core::Result<T> + Send,
    ) -> plinth_core::Result<Vec<T>> {
        self.run(|c| c.query_all(sql, &unsync(params), f))
    }

    pub fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> plinth_core::Result<usize> {
        self.run(|c| c.execute(sql, &unsync(params)))
    }

    pub fn has_table(&self, name: &str) -> bool {
        self.run(|c| c.has_table(name)).expect("catalog")
    }

    /// What someone with a database shell could do to a guard of ours.
    pub fn drop_trigger(&self, name: &str, table: &str) {
        let sql = match self.engine() {
            plinth_core::storage::EngineKind::Sqlite => format!("DROP TRIGGER {name}"),
            plinth_core::storage::EngineKind::Postgres => format!("DROP TRIGGER {name} ON {table}"),
        };
        self.execute(&sql, args![]).expect("drop trigger");
    }
}

fn unsync<'a>(params: &[&'a (dyn ToSql + Sync)]) -> Vec<&'a dyn ToSql> {
    params.iter().map(|p| *p as &dyn ToSql).collect()
}

pub fn db_path(dir: &Path) -> PathBuf {
    dir.join("plinth.db")
}

/// Whether this run of the suite serves from PostgreSQL (`PLINTH_TEST_ENGINE=postgres`,
/// set by `engines::the_whole_suite_passes_on_postgresql`), else SQLite.
pub fn on_postgres() -> bool {
    std::env::var("PLINTH_TEST_ENGINE").is_ok_and(|e| e == "postgres")
}

/// The database of the app in `dir`: its SQLite file, or on PostgreSQL a fresh
/// database of the test cluster owned by a role that is not superuser but may
/// create roles (Plinth's migration creates its serving roles with it). Kept in
/// the folder, so an app started again in it finds the same data.
pub fn database_url(dir: &Path) -> String {
    if !on_postgres() {
        return format!("sqlite://{}", db_path(dir).display());
    }
    let file = dir.join("postgres.url");
    if let Ok(url) = std::fs::read_to_string(&file) {
        return url;
    }
    // The synchronous client cannot run on an async test's thread.
    let url = std::thread::scope(|s| s.spawn(create_database).join()).expect("database created");
    std::fs::write(&file, &url).expect("remember the database");
    url
}

/// A fresh, empty database of the test cluster owned by a role that may create
/// roles, as [`database_url`] makes for an app; its URL.
pub fn create_database() -> String {
    let cluster = plinth_test_pg::cluster().expect("PLINTH_TEST_ENGINE=postgres needs PostgreSQL");
    let name = cluster.unique_name("it");
    let owner = format!("{name}_owner");
    let mut admin = postgres::Client::connect(&cluster.admin_url(), postgres::NoTls).expect("admin");
    for statement in [
        format!("CREATE ROLE {owner} LOGIN NOSUPERUSER NOBYPASSRLS CREATEROLE"),
        format!("CREATE DATABASE {name} OWNER {owner}"),
    ] {
        admin.batch_execute(&statement).expect("database");
    }
    // PostgreSQL 15: only the schema's owner (or a grantee) may create in `public`.
    postgres::Client::connect(&cluster.url(&name), postgres::NoTls)
        .and_then(|mut c| c.batch_execute(&format!("ALTER SCHEMA public OWNER TO {owner}")))
        .expect("schema owner");
    cluster.url_as(&owner, &name)
}

/// The variables every test app starts with: fast job polling and retries, quiet logs.
pub fn base_vars(dir: &Path) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", database_url(dir)),
        (
            "PLINTH_LOG",
            std::env::var("TEST_LOG").unwrap_or_else(|_| "off".to_string()),
        ),
        ("PLINTH_JOB_POLL_MS", "20".to_string()),
        ("PLINTH_JOB_BACKOFF_MS", "10".to_string()),
        ("PLINTH_SHUTDOWN_TIMEOUT_SECS", "10".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

impl TestAppBuilder {
    pub fn var(mut self, key: &str, value: &str) -> Self {
        self.vars.push((key.to_string(), value.to_string()));
        self
    }

    pub fn plugin(mut self, plugin: impl Plugin) -> Self {
        self.plugins.push(Arc::new(plugin));
        self
    }

    /// Reuses a folder (and its database) from a stopped app.
    pub fn in_dir(mut self, dir: Arc<TempDir>) -> Self {
        self.dir = Some(dir);
        self
    }

    /// Registers the built-in plugins, as the binary does.
    pub fn builtins(mut self) -> Self {
        self.plugins.push(plinth_teams::Teams::new());
        self.plugins.push(plinth_admin::Admin::new());
        self.plugins.push(plinth_billing::Billing::new());
        self.plugins.push(plinth_flags::Flags::new());
        self
    }

    /// Seeds the demo data (Acme and its four role users) before serving.
    pub fn demo(mut self) -> Self {
        self.demo = true;
        self
    }

    pub fn without_migrating(mut self) -> Self {
        self.migrate = false;
        self
    }

    /// Assembles the app, or says why it cannot be assembled.
    pub fn try_build(self) -> (plinth_core::Result<App>, Arc<TempDir>) {
        let dir = self
            .dir
            .unwrap_or_else(|| Arc::new(tempfile::tempdir().expect("temp dir")));
        let mut vars = base_vars(dir.path());
        vars.extend(self.vars);
        let config = Config::from_vars(vars).expect("test config");
        (App::new(config, self.plugins), dir)
    }

    pub fn build(self) -> (App, Arc<TempDir>) {
        let (app, dir) = self.try_build();
        (app.expect("app assembles"), dir)
    }

    pub async fn spawn(self) -> TestApp {
        let (migrate, demo) = (self.migrate, self.demo);
        let (app, dir) = self.build();
        plinth_core::runtime::logging::init(app.platform().config());
        if migrate {
            app.migrate().expect("migrations apply");
        }
        if demo {
            app.seed(&plinth_core::seed::SeedOptions {
                demo: true,
                ..Default::default()
            })
            .expect("demo seed");
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).expect("acceptor");
        let platform = app.platform().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(app.serve(acceptor, async move {
            let _ = rx.await;
        }));
        let app = TestApp {
            addr,
            platform,
            client: reqwest::Client::new(),
            dir,
            shutdown: Some(tx),
            server: Some(server),
        };
        // Serving (and holding the database lock) before the test goes on.
        eventually("the server answers", || async {
            app.client
                .get(app.url("/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        app
    }
}

/// Polls `check` until it holds or the time runs out (for background work).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}
