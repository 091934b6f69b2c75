//! Starts the real application on 127.0.0.1:0 over a fresh database in a temporary
//! folder, and stops it gracefully.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use plinth_core::{App, Config, Plugin};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

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

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request")
    }

    pub fn db_path(&self) -> PathBuf {
        db_path(self.dir.path())
    }

    /// A configured connection to the app's database, for assertions.
    pub fn conn(&self) -> rusqlite::Connection {
        plinth_core::storage::db::open_connection(&self.db_path()).expect("open database")
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

pub fn db_path(dir: &Path) -> PathBuf {
    dir.join("plinth.db")
}

/// The variables every test app starts with: fast job polling and retries, quiet logs.
pub fn base_vars(dir: &Path) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", format!("sqlite://{}", db_path(dir).display())),
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
