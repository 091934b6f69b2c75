//! The `plinth` binary: the command line, and the one place that lists the built-in
//! plugins. Everything else lives in plinth-core and plugins/*.

use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use plinth_core::http::openapi;
use plinth_core::runtime::logging;
use plinth_core::seed::{DEMO_PASSWORD, DEMO_USERS, SeedOptions};
use plinth_core::{App, Config, Error, Plugin, identity, server};

/// The built-in plugins, in registration order (which is also the order of their
/// tags in the API document). Billing is passed in because its
/// command-line tasks (reprocess, reconcile) run on the same instance.
fn builtin_plugins(billing: Arc<plinth_billing::Billing>) -> Vec<Arc<dyn Plugin>> {
    vec![
        plinth_teams::Teams::new(),
        plinth_admin::Admin::new(),
        billing,
        plinth_flags::Flags::new(),
    ]
}

#[derive(Parser)]
#[command(
    name = "plinth",
    version,
    about = "A self-hostable SaaS backend in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Migrate, then serve the API (default 127.0.0.1:8000).
    Serve {
        /// Listen address (overrides PLINTH_ADDR).
        #[arg(long)]
        addr: Option<SocketAddr>,
        /// Seed the demo data first (refused in production).
        #[arg(long)]
        demo: bool,
    },
    /// Apply pending database migrations.
    Migrate,
    /// Seed demo data and synthetic tenants.
    Seed {
        /// The demo organisation and its accounts.
        #[arg(long)]
        demo: bool,
        /// Synthetic organisations for load tests.
        #[arg(long, default_value_t = 0)]
        orgs: u32,
        /// Members per synthetic organisation.
        #[arg(long, default_value_t = 0)]
        members: u32,
    },
    /// Print the merged OpenAPI document.
    Openapi,
    /// Create a platform staff account, or grant staff to an existing one.
    /// The password comes from PLINTH_ADMIN_PASSWORD, a prompt, or standard input.
    CreateAdmin {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "Platform Admin")]
        name: String,
    },
    /// List the plugins and whether each is enabled.
    Plugins,
    /// Copy the database consistently (safe while a server is running).
    Backup {
        /// The file to write.
        path: std::path::PathBuf,
    },
    /// Replace the database with a backup (refused while a server runs on it).
    Restore {
        /// The backup file.
        path: std::path::PathBuf,
    },
    /// Billing tasks: reprocess a webhook event, reconcile with Stripe.
    Billing {
        #[command(subcommand)]
        command: BillingCommand,
    },
    /// The audit log: verify its hash chain, or archive old entries.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Database tasks: copy a SQLite database into PostgreSQL.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
}

#[derive(Subcommand)]
enum DbCommand {
    /// Copy the SQLite database (DATABASE_URL) into an empty PostgreSQL database:
    /// migrates it (creating the serving roles when the URL's role may), copies
    /// every table in one transaction, then verifies the audit chain there.
    Copy {
        /// postgres://USER:PASS@HOST:PORT/DB of an empty database.
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand)]
enum BillingCommand {
    /// Apply a stored Stripe webhook event again (by its evt_... id).
    Reprocess { event_id: String },
    /// Re-read every customer and subscription from Stripe and repair drift.
    Reconcile,
    /// Create a Stripe product and price for every paid plan without a price id,
    /// and store the ids (restart running servers to offer them).
    SyncPlans {
        /// Print what would be created; send and store nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chain and report the first altered or missing entry (exit 1).
    Verify,
    /// Archive entries older than N days to a file and prune them.
    Archive {
        #[arg(long)]
        older_than_days: u32,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("plinth: {e}");
            return ExitCode::from(2);
        }
    };
    if let Command::Serve { addr: Some(addr), .. } = &cli.command {
        config.addr = *addr;
    }
    logging::init(&config);
    match run(cli.command, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plinth: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> Result<(), Error> {
    let billing = plinth_billing::Billing::new();
    let mut app = App::new(config, builtin_plugins(billing.clone()))?;
    match command {
        Command::Serve { demo, .. } => {
            app.claim_database()?;
            migrate(&app)?;
            if demo {
                let report = app.seed(&SeedOptions {
                    demo: true,
                    ..SeedOptions::default()
                })?;
                print_demo_accounts(report.users_created);
            }
            let addr = app.platform().config().addr;
            let acceptor = server::bind(addr).await?;
            println!("Plinth listening on http://{addr} (Swagger UI: http://{addr}/docs)");
            app.serve(acceptor, server::shutdown_signal()).await
        }
        Command::Migrate => {
            let applied = migrate(&app)?;
            if applied == 0 {
                println!("database is up to date");
            }
            Ok(())
        }
        Command::Seed { demo, orgs, members } => {
            if !demo && (orgs == 0 || members == 0) {
                return Err(Error::BadRequest(
                    "nothing to seed: pass --demo and/or --orgs N --members M".into(),
                ));
            }
            migrate(&app)?;
            let report = app.seed(&SeedOptions { demo, orgs, members })?;
            println!(
                "seeded: {} accounts and {} organizations created",
                report.users_created, report.orgs_created
            );
            if demo {
                print_demo_accounts(report.users_created);
            }
            Ok(())
        }
        Command::Openapi => {
            print!("{}", openapi::to_pretty_json(app.spec()));
            Ok(())
        }
        Command::CreateAdmin { email, name } => {
            migrate(&app)?;
            let password = read_admin_password()?;
            plinth_core::storage::db::off_runtime(|| create_admin(&app, &email, &name, &password))
        }
        Command::Backup { path } => {
            plinth_core::storage::backup::backup(sqlite_file(&app)?, &path)?;
            println!("backup written to {}", path.display());
            Ok(())
        }
        Command::Restore { path } => {
            let db = sqlite_file(&app)?;
            plinth_core::storage::backup::restore(&path, db)?;
            println!("restored {} from {}", db.display(), path.display());
            Ok(())
        }
        Command::Audit { command } => {
            migrate(&app)?;
            match command {
                AuditCommand::Verify => {
                    let report = app.verify_audit()?;
                    match report.broken {
                        None => {
                            println!("audit log intact: {} entries checked", report.checked);
                            Ok(())
                        }
                        Some((seq, why)) => {
                            println!(
                                "audit log BROKEN at entry {seq}: {why} ({} entries before it verified)",
                                report.checked
                            );
                            Err(Error::Conflict(format!(
                                "the audit chain is broken at entry {seq}"
                            )))
                        }
                    }
                }
                AuditCommand::Archive { older_than_days } => {
                    let (n, file) = app.archive_audit(older_than_days)?;
                    if n == 0 {
                        println!("nothing older than {older_than_days} days");
                    } else {
                        println!("archived {n} entries to {}", file.display());
                    }
                    Ok(())
                }
            }
        }
        Command::Billing { command } => {
            migrate(&app)?;
            match command {
                BillingCommand::Reprocess { event_id } => {
                    let outcome = billing.reprocess(app.platform(), &event_id).await?;
                    println!("{event_id}: {outcome}");
                }
                BillingCommand::Reconcile => {
                    let changes = billing.reconcile(app.platform()).await?;
                    if changes.is_empty() {
                        println!("billing matches Stripe: nothing to repair");
                    }
                    for line in changes {
                        println!("{line}");
                    }
                }
                BillingCommand::SyncPlans { dry_run } => {
                    for line in billing.sync_plans(app.platform(), dry_run).await? {
                        println!("{line}");
                    }
                }
            }
            Ok(())
        }
        Command::Db {
            command: DbCommand::Copy { to },
        } => {
            // The target gets this deployment's configuration (secrets, role
            // settings), with its own URL.
            let vars = std::env::vars()
                .filter(|(k, _)| k != "DATABASE_URL")
                .chain([("DATABASE_URL".to_string(), to)]);
            let config = Config::from_vars(vars).map_err(|e| Error::BadRequest(e.to_string()))?;
            let target = App::new(config, builtin_plugins(plinth_billing::Billing::new()))?;
            let started = std::time::Instant::now();
            let copied = app.copy_into(&target)?;
            let rows: u64 = copied.iter().map(|(_, n)| n).sum();
            for (table, n) in &copied {
                println!("  {table:<28} {n:>9} rows");
            }
            println!(
                "copied {rows} rows of {} tables in {:.1} s",
                copied.len(),
                started.elapsed().as_secs_f64()
            );
            let report = target.verify_audit()?;
            match report.broken {
                None => {
                    println!(
                        "audit log intact on the target: {} entries checked",
                        report.checked
                    );
                    Ok(())
                }
                Some((seq, why)) => Err(Error::Conflict(format!(
                    "the copied audit chain is broken at entry {seq}: {why}"
                ))),
            }
        }
        Command::Plugins => {
            if app.plugins().is_empty() {
                println!("no plugins registered");
            }
            for p in app.plugins() {
                println!(
                    "{:<12} {:<8} {:<8} {:<9} {:>3} operations {:>3} migrations  {}",
                    p.name,
                    p.version,
                    if p.external { "external" } else { "built-in" },
                    if p.enabled { "enabled" } else { "disabled" },
                    p.operations,
                    p.migrations,
                    p.description
                );
            }
            Ok(())
        }
    }
}

fn migrate(app: &App) -> Result<usize, Error> {
    let applied = app.migrate()?;
    for m in &applied {
        println!("applied {}", m.id());
    }
    Ok(applied.len())
}

fn print_demo_accounts(created: usize) {
    println!("demo accounts ({created} new), password `{DEMO_PASSWORD}`:");
    for (email, _, staff, role) in DEMO_USERS {
        match role {
            Some(role) => println!("  {email} ({} of Acme)", role.as_str()),
            None if staff => println!("  {email} (platform staff)"),
            None => println!("  {email}"),
        }
    }
}

fn read_admin_password() -> Result<String, Error> {
    if let Ok(p) = std::env::var("PLINTH_ADMIN_PASSWORD") {
        return Ok(p);
    }
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").map_err(Error::internal)?;
        let second = rpassword::prompt_password("Repeat password: ").map_err(Error::internal)?;
        if first != second {
            return Err(Error::invalid("password", "the two passwords differ"));
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(Error::internal)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// The SQLite file `backup` and `restore` work on; PostgreSQL has its own tools.
fn sqlite_file(app: &App) -> Result<&std::path::Path, Error> {
    app.platform().config().sqlite_path().ok_or_else(|| {
        Error::invalid(
            "DATABASE_URL",
            "plinth backup and restore copy a SQLite file; on PostgreSQL use pg_dump and pg_restore",
        )
    })
}

fn create_admin(app: &App, email: &str, name: &str, password: &str) -> Result<(), Error> {
    use identity::{passwords, users};
    let email = users::normalize_email(email);
    let created = app.platform().db().write_blocking(|tx| {
        if let Some(id) = users::find_id_by_email(tx, &email)? {
            users::set_platform_admin(tx, id, true)?;
            return Ok(None);
        }
        if let Some(problem) = passwords::policy_violation(password) {
            return Err(Error::invalid("password", problem));
        }
        let hash = passwords::hash(password)?;
        let user = users::NewUser {
            email: &email,
            name,
            password_hash: &hash,
            is_platform_admin: true,
            email_verified: true,
        };
        users::create(tx, &user).map(Some)
    })?;
    match created {
        Some(id) => println!("created platform staff account {email} ({id})"),
        None => println!("{email} already had an account; it is now platform staff (password unchanged)"),
    }
    Ok(())
}

/// Errors as a person at a terminal should read them.
fn describe(err: &Error) -> String {
    match err {
        Error::Validation(fields) => fields
            .iter()
            .map(|f| format!("{}: {}", f.field, f.message))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}
