//! Typed configuration, read once from the environment at start-up.
//!
//! Development needs no configuration at all: every value has a default, and the
//! secrets fall back to well-known development values. Production refuses to start
//! while any secret is missing or still a development default, and names each one.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Development fallbacks. Production refuses every one of them.
const DEV_SECRET_KEY: &str = "plinth-development-secret-key-do-not-use-in-production";
const DEV_JWT_SECRET: &str = "plinth-development-jwt-secret-do-not-use-in-production";
/// Secrets shorter than this are refused in production (256 bits as hex or base64 is longer).
const MIN_SECRET_LEN: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines, the development default.
    Pretty,
    /// One JSON object per line, the production default.
    Json,
}

/// A secret value: never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Everything Plinth reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// `PLINTH_ENV`: `development` (default) or `production`.
    pub env: Environment,
    /// `DATABASE_URL`: `sqlite://PATH` (default `sqlite://plinth.db` in the working
    /// directory) or `postgres://USER:PASS@HOST:PORT/DB`.
    pub database: Database,
    /// `SECRET_KEY`: keys hashes of single-use tokens and other server-side secrets.
    pub secret_key: Secret,
    /// `JWT_SECRET`: signs access tokens (HS256).
    pub jwt_secret: Secret,
    /// `STRIPE_SECRET_KEY`: billing talks to Stripe only when set.
    pub stripe_secret_key: Option<Secret>,
    /// `STRIPE_WEBHOOK_SECRET`: verifies Stripe webhook signatures.
    pub stripe_webhook_secret: Option<Secret>,
    /// `STRIPE_API_BASE`: where the Stripe client sends requests, default Stripe's
    /// (tests and staging point it at a stand-in).
    pub stripe_api_base: String,
    /// `PLINTH_BILLING_GRACE_DAYS`: how long a past-due org keeps its plan, default 7.
    pub billing_grace: Duration,
    /// `SMTP_URL`: e.g. `smtp://user:pass@host:587`; unset in development means mail
    /// goes to the outbox table and the log only.
    pub smtp_url: Option<Secret>,
    /// `APP_URL`: the frontend's origin, used in links in emails and as the CORS origin.
    pub app_url: String,
    /// `PLINTH_ADDR`: listen address, default `127.0.0.1:8000`.
    pub addr: SocketAddr,
    /// `PLINTH_DISABLED_PLUGINS`: comma-separated plugin names to leave out.
    pub disabled_plugins: Vec<String>,
    /// `PLINTH_LOG_FORMAT`: `pretty` or `json`; default by environment.
    pub log_format: LogFormat,
    /// `PLINTH_LOG` (or `RUST_LOG`): tracing filter, default `info`.
    pub log_filter: String,
    /// `PLINTH_BODY_LIMIT`: maximum request body in bytes, default 1 MiB.
    pub body_limit: usize,
    /// `PLINTH_DB_POOL_SIZE`: pooled SQLite connections, default 8.
    pub db_pool_size: u32,
    /// `PLINTH_JOB_WORKERS`: concurrent background job workers, default 2.
    pub job_workers: usize,
    /// `PLINTH_JOB_POLL_MS`: how often idle workers look for due jobs, default 1000.
    pub job_poll_interval: Duration,
    /// `PLINTH_JOB_BACKOFF_MS`: first retry delay, doubled per attempt, default 2000.
    pub job_backoff_base: Duration,
    /// `PLINTH_JOB_MAX_ATTEMPTS`: attempts before a job is dead, default 5.
    pub job_max_attempts: u32,
    /// `PLINTH_JOB_LEASE_SECS`: a running job's lease, renewed while it runs; a
    /// job whose lease ran out (its node died) runs again. Default 60.
    pub job_lease: Duration,
    /// `PLINTH_SHUTDOWN_TIMEOUT_SECS`: how long in-flight requests may take to finish.
    pub shutdown_timeout: Duration,
    /// `PLINTH_METRICS_TOKEN`: when set, /metrics requires `Authorization: Bearer <token>`.
    pub metrics_token: Option<Secret>,
    /// `PLINTH_ACCESS_TOKEN_TTL_SECS`: access token lifetime, default 900 (15 minutes).
    pub access_token_ttl: Duration,
    /// `PLINTH_SESSION_IDLE_TIMEOUT_SECS`: a session unused (not refreshed) this long
    /// ends, default 7 days.
    pub session_idle_timeout: Duration,
    /// `PLINTH_SESSION_LIFETIME_SECS`: a session ends this long after login whatever
    /// its use, default 30 days.
    pub session_lifetime: Duration,
    /// `PLINTH_JWT_ISSUER` and `PLINTH_JWT_AUDIENCE`: the `iss` and `aud` of access
    /// tokens, default `plinth` and `plinth-api`.
    pub jwt_issuer: String,
    pub jwt_audience: String,
    /// `PLINTH_TRUSTED_PROXIES`: comma-separated proxy IPs whose X-Forwarded-For is
    /// believed; from anyone else the header is ignored.
    pub trusted_proxies: Vec<IpAddr>,
    /// `PLINTH_AUTH_RATE_PER_IP`: auth requests (login, register, resend, reset) per
    /// minute from one IP, per kind, default 30.
    pub auth_rate_per_ip: u32,
    /// `PLINTH_AUTH_RATE_PER_ACCOUNT`: the same per account (email), default 10.
    pub auth_rate_per_account: u32,
    /// `PLINTH_API_KEY_RATE_PER_MINUTE`: requests one org API key may make a
    /// minute, default 600.
    pub api_key_rate_per_minute: u32,
    /// `PLINTH_MAIL_FROM`: the sender of every email.
    pub mail_from: String,
    /// `PLINTH_PASSWORD_HASH_CONCURRENCY`: argon2 runs at once, default the CPU count.
    pub password_hash_concurrency: usize,
    /// `PLINTH_AUDIT_RETENTION_DAYS`: audit entries older than this are archived to
    /// a file and pruned (hourly); unset keeps them forever.
    pub audit_retention_days: Option<u32>,
    /// `PLINTH_MAX_IN_FLIGHT`: requests served at once; more get 503 with
    /// Retry-After instead of queueing in memory, default 1024.
    pub max_in_flight: usize,
    /// `PLINTH_IDLE_TIMEOUT_SECS`: idle keep-alive connections close after this, default 60.
    pub idle_timeout: Duration,
    /// `PLINTH_BACKUP_DIR`: when set, a backup is taken there every
    /// `PLINTH_BACKUP_INTERVAL_SECS` (default 86400), keeping `PLINTH_BACKUP_KEEP` (7).
    pub backup_dir: Option<PathBuf>,
    pub backup_interval: Duration,
    pub backup_keep: usize,
    /// `PLINTH_PLUGIN_DIR`: shared libraries loaded as external plugins at start,
    /// default `./plugins.d` (a missing folder means none).
    pub plugin_dir: PathBuf,
    /// `PLINTH_AUDIT_ARCHIVE_DIR`: where archives go, default `audit-archive` beside
    /// the database.
    pub audit_archive_dir: PathBuf,
}

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// One SQLite file, served by one process.
    Sqlite(PathBuf),
    Postgres(Postgres),
}

/// A PostgreSQL database and the roles Plinth serves it with.
///
/// The URL's role owns the schema (it migrates, and serves core's cross-tenant
/// reads); requests run as two roles without superuser or BYPASSRLS, each on its
/// own pool: `PLINTH_PG_SYSTEM_ROLE` (non-tenant data) and `PLINTH_PG_TENANT_ROLE`
/// (tenant data, under row-level security), by default `<database>_system` and
/// `<database>_tenant`. Their passwords are `PLINTH_PG_SYSTEM_PASSWORD` and
/// `PLINTH_PG_TENANT_PASSWORD`, by default derived from `SECRET_KEY`, so a
/// migration that creates the roles and the servers that log in as them agree
/// without more configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Postgres {
    pub url: Secret,
    pub system_role: Option<String>,
    pub tenant_role: Option<String>,
    pub system_password: Option<Secret>,
    pub tenant_password: Option<Secret>,
}

/// Why the configuration was refused: every problem found, not only the first.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .problems.join("\n  - "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads configuration from explicit variables (tests use this instead of the
    /// process environment, which is shared between parallel tests).
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars: HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(_, v)| !v.trim().is_empty())
            .collect();
        let mut problems = Vec::new();
        let get = |name: &str| vars.get(name).map(|v| v.trim().to_string());

        let env = match get("PLINTH_ENV").as_deref() {
            None | Some("development") | Some("dev") => Environment::Development,
            Some("production") | Some("prod") => Environment::Production,
            Some(other) => {
                problems.push(format!(
                    "PLINTH_ENV must be `development` or `production`, not `{other}`"
                ));
                Environment::Development
            }
        };
        let production = env == Environment::Production;

        let database = match get("DATABASE_URL") {
            None => Database::Sqlite(PathBuf::from("plinth.db")),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Database::Postgres(Postgres {
                    url: Secret::new(url),
                    system_role: get("PLINTH_PG_SYSTEM_ROLE"),
                    tenant_role: get("PLINTH_PG_TENANT_ROLE"),
                    system_password: get("PLINTH_PG_SYSTEM_PASSWORD").map(Secret::new),
                    tenant_password: get("PLINTH_PG_TENANT_PASSWORD").map(Secret::new),
                })
            }
            Some(url) => match parse_database_url(&url) {
                Ok(path) => Database::Sqlite(path),
                Err(msg) => {
                    problems.push(msg);
                    Database::Sqlite(PathBuf::from("plinth.db"))
                }
            },
        };
        if production && get("DATABASE_URL").is_none() {
            problems.push("DATABASE_URL is required in production (sqlite://PATH or postgres://...)".into());
        }
        let database_path = match &database {
            Database::Sqlite(path) => Some(path.clone()),
            Database::Postgres(_) => None,
        };
        if database_path.is_none() && get("PLINTH_BACKUP_DIR").is_some() {
            problems.push(
                "PLINTH_BACKUP_DIR: scheduled backups copy a SQLite file; on PostgreSQL back up with the server's own tools (pg_dump, base backups)".into(),
            );
        }

        let mut secret = |name: &str, dev_default: &str| -> Secret {
            match get(name) {
                Some(v) if production && v == dev_default => {
                    problems.push(format!("{name} is the development default; set a real secret"));
                    Secret(v)
                }
                Some(v) if production && v.len() < MIN_SECRET_LEN => {
                    problems.push(format!(
                        "{name} is too short ({} characters); use at least {MIN_SECRET_LEN} random characters",
                        v.len()
                    ));
                    Secret(v)
                }
                Some(v) => Secret(v),
                None => {
                    if production {
                        problems.push(format!("{name} is required in production"));
                    }
                    Secret(dev_default.to_string())
                }
            }
        };
        let secret_key = secret("SECRET_KEY", DEV_SECRET_KEY);
        let jwt_secret = secret("JWT_SECRET", DEV_JWT_SECRET);
        if production && secret_key == jwt_secret {
            problems.push("SECRET_KEY and JWT_SECRET must differ".into());
        }

        let stripe_secret_key = get("STRIPE_SECRET_KEY").map(Secret);
        let stripe_webhook_secret = get("STRIPE_WEBHOOK_SECRET").map(Secret);
        if stripe_secret_key.is_some() && stripe_webhook_secret.is_none() {
            problems.push(
                "STRIPE_WEBHOOK_SECRET is required when STRIPE_SECRET_KEY is set (webhooks could not be verified)"
                    .into(),
            );
        }

        let stripe_api_base = get("STRIPE_API_BASE").unwrap_or_else(|| "https://api.stripe.com/".into());
        if !(stripe_api_base.starts_with("https://") || stripe_api_base.starts_with("http://")) {
            problems.push("STRIPE_API_BASE must be an http(s) URL".into());
        }

        let smtp_url = get("SMTP_URL").map(Secret);
        if let Some(url) = &smtp_url {
            if !(url.expose().starts_with("smtp://") || url.expose().starts_with("smtps://")) {
                problems.push("SMTP_URL must start with smtp:// or smtps://".into());
            }
        } else if production {
            problems.push("SMTP_URL is required in production (emails would not be delivered)".into());
        }

        let app_url = match get("APP_URL") {
            Some(url) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    problems.push(format!("APP_URL must be an http(s) URL, not `{url}`"));
                }
                url.trim_end_matches('/').to_string()
            }
            None => {
                if production {
                    problems.push("APP_URL is required in production (email links, CORS origin)".into());
                }
                "http://localhost:3000".to_string()
            }
        };

        let addr = match get("PLINTH_ADDR") {
            None => SocketAddr::from(([127, 0, 0, 1], 8000)),
            Some(a) => a.parse().unwrap_or_else(|_| {
                problems.push(format!("PLINTH_ADDR must be HOST:PORT, not `{a}`"));
                SocketAddr::from(([127, 0, 0, 1], 8000))
            }),
        };

        let disabled_plugins = get("PLINTH_DISABLED_PLUGINS")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();

        let log_format = match get("PLINTH_LOG_FORMAT").as_deref() {
            None if production => LogFormat::Json,
            None => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => {
                problems.push(format!(
                    "PLINTH_LOG_FORMAT must be `json` or `pretty`, not `{other}`"
                ));
                LogFormat::Pretty
            }
        };
        let log_filter = get("PLINTH_LOG")
            .or_else(|| get("RUST_LOG"))
            .unwrap_or_else(|| "info".into());

        let mut number = |name: &str, default: u64, min: u64, max: u64| -> u64 {
            match get(name) {
                None => default,
                Some(v) => match v.parse::<u64>() {
                    Ok(n) if (min..=max).contains(&n) => n,
                    _ => {
                        problems.push(format!(
                            "{name} must be a whole number from {min} to {max}, not `{v}`"
                        ));
                        default
                    }
                },
            }
        };
        let body_limit = number("PLINTH_BODY_LIMIT", 1024 * 1024, 1024, 256 * 1024 * 1024) as usize;
        let db_pool_size = number("PLINTH_DB_POOL_SIZE", 8, 1, 256) as u32;
        let job_workers = number("PLINTH_JOB_WORKERS", 2, 1, 64) as usize;
        let job_poll_interval = Duration::from_millis(number("PLINTH_JOB_POLL_MS", 1000, 10, 600_000));
        let job_backoff_base = Duration::from_millis(number("PLINTH_JOB_BACKOFF_MS", 2000, 1, 3_600_000));
        let job_max_attempts = number("PLINTH_JOB_MAX_ATTEMPTS", 5, 1, 100) as u32;
        let job_lease = Duration::from_secs(number("PLINTH_JOB_LEASE_SECS", 60, 1, 86_400));
        let shutdown_timeout = Duration::from_secs(number("PLINTH_SHUTDOWN_TIMEOUT_SECS", 30, 1, 3600));
        let metrics_token = get("PLINTH_METRICS_TOKEN").map(Secret);
        let access_token_ttl = Duration::from_secs(number("PLINTH_ACCESS_TOKEN_TTL_SECS", 900, 30, 86_400));
        let session_idle_timeout = Duration::from_secs(number(
            "PLINTH_SESSION_IDLE_TIMEOUT_SECS",
            7 * 86_400,
            60,
            365 * 86_400,
        ));
        let session_lifetime = Duration::from_secs(number(
            "PLINTH_SESSION_LIFETIME_SECS",
            30 * 86_400,
            60,
            365 * 86_400,
        ));
        let auth_rate_per_ip = number("PLINTH_AUTH_RATE_PER_IP", 30, 1, 100_000) as u32;
        let auth_rate_per_account = number("PLINTH_AUTH_RATE_PER_ACCOUNT", 10, 1, 100_000) as u32;
        let api_key_rate_per_minute = number("PLINTH_API_KEY_RATE_PER_MINUTE", 600, 1, 1_000_000) as u32;
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
        let password_hash_concurrency = number("PLINTH_PASSWORD_HASH_CONCURRENCY", cpus, 1, 256) as usize;
        let max_in_flight = number("PLINTH_MAX_IN_FLIGHT", 1024, 1, 1_000_000) as usize;
        let billing_grace = Duration::from_secs(86_400 * number("PLINTH_BILLING_GRACE_DAYS", 7, 0, 365));
        let idle_timeout = Duration::from_secs(number("PLINTH_IDLE_TIMEOUT_SECS", 60, 1, 3600));
        let backup_interval =
            Duration::from_secs(number("PLINTH_BACKUP_INTERVAL_SECS", 86_400, 1, 31_536_000));
        let backup_keep = number("PLINTH_BACKUP_KEEP", 7, 1, 10_000) as usize;
        let audit_archive_dir = get("PLINTH_AUDIT_ARCHIVE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                database_path
                    .as_deref()
                    .and_then(Path::parent)
                    .map(|p| p.join("audit-archive"))
                    .unwrap_or_else(|| PathBuf::from("audit-archive"))
            });
        let audit_retention_days = get("PLINTH_AUDIT_RETENTION_DAYS")
            .map(|_| number("PLINTH_AUDIT_RETENTION_DAYS", 365, 1, 36_500) as u32);
        let jwt_issuer = get("PLINTH_JWT_ISSUER").unwrap_or_else(|| "plinth".into());
        let jwt_audience = get("PLINTH_JWT_AUDIENCE").unwrap_or_else(|| "plinth-api".into());
        let mail_from =
            get("PLINTH_MAIL_FROM").unwrap_or_else(|| "Plinth <no-reply@plinth.localhost>".into());
        let trusted_proxies = get("PLINTH_TRUSTED_PROXIES")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .filter_map(|s| match s.parse::<IpAddr>() {
                        Ok(ip) => Some(ip),
                        Err(_) => {
                            problems.push(format!("PLINTH_TRUSTED_PROXIES: `{s}` is not an IP address"));
                            None
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();

        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        Ok(Config {
            env,
            database,
            secret_key,
            jwt_secret,
            stripe_secret_key,
            stripe_webhook_secret,
            stripe_api_base,
            billing_grace,
            smtp_url,
            app_url,
            addr,
            disabled_plugins,
            log_format,
            log_filter,
            body_limit,
            db_pool_size,
            job_workers,
            job_poll_interval,
            job_backoff_base,
            job_max_attempts,
            job_lease,
            shutdown_timeout,
            metrics_token,
            access_token_ttl,
            session_idle_timeout,
            session_lifetime,
            jwt_issuer,
            jwt_audience,
            trusted_proxies,
            auth_rate_per_ip,
            auth_rate_per_account,
            api_key_rate_per_minute,
            mail_from,
            password_hash_concurrency,
            audit_archive_dir,
            audit_retention_days,
            max_in_flight,
            idle_timeout,
            backup_dir: get("PLINTH_BACKUP_DIR").map(PathBuf::from),
            backup_interval,
            backup_keep,
            plugin_dir: get("PLINTH_PLUGIN_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("plugins.d")),
        })
    }

    /// The SQLite file, when the data lives in one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match &self.database {
            Database::Sqlite(path) => Some(path),
            Database::Postgres(_) => None,
        }
    }

    pub fn is_production(&self) -> bool {
        self.env == Environment::Production
    }

    /// Whether a plugin of this name is switched off by configuration.
    pub fn plugin_disabled(&self, name: &str) -> bool {
        self.disabled_plugins.iter().any(|d| d == name)
    }
}

/// Accepts `sqlite://PATH`, `sqlite:PATH` and `sqlite:///ABSOLUTE/PATH`.
fn parse_database_url(url: &str) -> Result<PathBuf, String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| {
            format!(
                "DATABASE_URL must look like sqlite://PATH or postgres://USER:PASS@HOST:PORT/DB, not `{url}`"
            )
        })?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Err(
            "DATABASE_URL must name a file (sqlite://PATH); in-memory databases cannot be shared by the pool"
                .into(),
        );
    }
    Ok(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_needs_no_configuration() {
        let config = Config::from_vars(Vec::<(String, String)>::new()).expect("defaults");
        assert_eq!(config.env, Environment::Development);
        assert_eq!(config.addr.to_string(), "127.0.0.1:8000");
        assert_eq!(config.database, Database::Sqlite(PathBuf::from("plinth.db")));
    }

    #[test]
    fn production_names_every_missing_secret() {
        let err = Config::from_vars([("PLINTH_ENV", "production")]).expect_err("refused");
        let text = err.to_string();
        for name in ["SECRET_KEY", "JWT_SECRET", "DATABASE_URL", "SMTP_URL", "APP_URL"] {
            assert!(text.contains(name), "{name} missing from: {text}");
        }
    }

    #[test]
    fn production_refuses_development_defaults_and_short_secrets() {
        let err = Config::from_vars([
            ("PLINTH_ENV", "production"),
            ("SECRET_KEY", DEV_SECRET_KEY),
            ("JWT_SECRET", "short"),
            ("DATABASE_URL", "sqlite:///var/lib/plinth.db"),
            ("SMTP_URL", "smtp://mail:25"),
            ("APP_URL", "https://app.example.com"),
        ])
        .expect_err("refused");
        assert!(
            err.problems
                .iter()
                .any(|p| p.contains("SECRET_KEY is the development default"))
        );
        assert!(err.problems.iter().any(|p| p.contains("JWT_SECRET is too short")));
        assert_eq!(err.problems.len(), 2, "{:?}", err.problems);
    }

    #[test]
    fn database_url_forms() {
        assert_eq!(
            parse_database_url("sqlite://data/x.db"),
            Ok(PathBuf::from("data/x.db"))
        );
        assert_eq!(
            parse_database_url("sqlite:///abs/x.db"),
            Ok(PathBuf::from("/abs/x.db"))
        );
        assert!(parse_database_url("sqlite::memory:").is_err());
        assert!(parse_database_url("mysql://x").is_err_and(|e| e.contains("postgres://")));
    }

    #[test]
    fn a_postgres_url_names_its_roles_and_refuses_file_backups() {
        let config = Config::from_vars([
            ("DATABASE_URL", "postgresql://plinth:pw@db:5432/app"),
            ("PLINTH_PG_TENANT_ROLE", "app_rls"),
        ])
        .expect("config");
        let Database::Postgres(pg) = &config.database else {
            panic!("not PostgreSQL: {:?}", config.database);
        };
        assert_eq!(pg.tenant_role.as_deref(), Some("app_rls"));
        assert_eq!(pg.system_role, None);
        assert_eq!(config.sqlite_path(), None);
        assert!(
            !format!("{config:?}").contains("pw@"),
            "the URL's password is a secret"
        );
        let err = Config::from_vars([
            ("DATABASE_URL", "postgres://plinth@db/app"),
            ("PLINTH_BACKUP_DIR", "/backups"),
        ])
        .expect_err("refused");
        assert!(err.problems.iter().any(|p| p.contains("pg_dump")), "{err}");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let config = Config::from_vars([("JWT_SECRET", "super-secret-value")]).expect("config");
        assert!(!format!("{config:?}").contains("super-secret-value"));
    }
}
