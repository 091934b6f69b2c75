//! `widgets`: a small plugin that exercises the whole plugin contract in tests
//! (migrations, API with its spec fragment, events, jobs, seed).

use std::path::PathBuf;
use std::time::Duration;

use plinth_core::params;
use plinth_core::platform::JobHandler;
use plinth_core::runtime::events::Event;
use plinth_core::seed::SeedOptions;
use plinth_core::storage::migrations::Migration;
use plinth_core::{ApiPart, Error, Platform, Plugin, Result, Schedule};
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi, Tags};
use serde_json::json;

pub const MIGRATION: &str = "CREATE TABLE widgets (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    processed INTEGER NOT NULL DEFAULT 0
) STRICT;";

#[derive(Default)]
pub struct Widgets {
    /// Read migrations from this folder instead of the built-in one.
    pub migrations_dir: Option<PathBuf>,
    /// Registered under another name (to test name clashes).
    pub name: Option<&'static str>,
    /// Enqueue a `widgets.tick` job this often.
    pub tick_every: Option<Duration>,
}

impl Plugin for Widgets {
    fn name(&self) -> &'static str {
        self.name.unwrap_or("widgets")
    }

    fn description(&self) -> &'static str {
        "Widgets for tests"
    }

    fn migrations(&self) -> Result<Vec<Migration>> {
        match &self.migrations_dir {
            Some(dir) => Migration::load_dir(self.name(), dir),
            None => Ok(vec![Migration {
                owner: self.name().into(),
                version: 1,
                name: "create_widgets".into(),
                sql: MIGRATION.into(),
                postgres: None,
            }]),
        }
    }

    fn api(&self, platform: &Platform) -> Result<Option<ApiPart>> {
        ApiPart::new(WidgetsApi {
            platform: platform.clone(),
        })
        .map(Some)
    }

    fn subscribe(&self, bus: &mut plinth_core::runtime::events::EventBusBuilder) {
        bus.on("widget.created", |event, ctx| {
            ctx.jobs.enqueue(ctx.tx, "widgets.process", &event.payload)?;
            Ok(())
        });
    }

    fn schedules(&self) -> Vec<Schedule> {
        self.tick_every
            .map(|every| Schedule {
                kind: "widgets.tick",
                every,
            })
            .into_iter()
            .collect()
    }

    fn jobs(&self) -> Vec<JobHandler> {
        vec![
            JobHandler::new("widgets.tick", |_| async { Ok(()) }),
            JobHandler::new("widgets.process", |ctx| async move {
                let fail_times = ctx.payload["fail_times"].as_u64().unwrap_or(0) as u32;
                if ctx.payload["panic"].as_bool() == Some(true) {
                    panic!("widget job panicked on purpose");
                }
                if ctx.attempt <= fail_times {
                    return Err(format!("planned failure {}", ctx.attempt));
                }
                if let Some(ms) = ctx.payload["sleep_ms"].as_u64() {
                    // A long job: longer than its lease in the lease tests.
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                let id = ctx.payload["id"].as_str().unwrap_or_default().to_string();
                ctx.platform
                    .db()
                    .call(move |conn| {
                        conn.execute(
                            "UPDATE widgets SET processed = processed + 1 WHERE id = ?1",
                            params![id],
                        )?;
                        Ok(())
                    })
                    .await
                    .map_err(|e| e.to_string())
            }),
        ]
    }

    fn seed(&self, tx: &plinth_core::seed::SeedContext<'_>, options: &SeedOptions) -> Result<()> {
        if options.demo {
            tx.sql().execute(
                "INSERT INTO widgets (id, name) VALUES ('demo', 'Demo widget') ON CONFLICT DO NOTHING",
                params![],
            )?;
        }
        Ok(())
    }
}

#[derive(Tags)]
enum WidgetsTag {
    /// Test widgets.
    Widgets,
}

#[derive(Object)]
struct NewWidget {
    name: String,
    /// How many times its processing job fails before succeeding.
    #[oai(default)]
    fail_times: u32,
    /// Make its processing job panic.
    #[oai(default)]
    panic: bool,
}

#[derive(Object)]
struct Widget {
    id: String,
    name: String,
}

#[derive(Object)]
struct WidgetPage {
    items: Vec<Widget>,
    next_cursor: Option<String>,
}

#[derive(Clone)]
struct WidgetsApi {
    platform: Platform,
}

#[OpenApi(prefix_path = "/api/widgets", tag = "WidgetsTag::Widgets")]
impl WidgetsApi {
    /// List widgets
    #[oai(path = "/", method = "get", operation_id = "listWidgets")]
    async fn list(&self) -> Result<Json<WidgetPage>> {
        let items = self
            .platform
            .db()
            .call(|conn| {
                conn.query_all("SELECT id, name FROM widgets ORDER BY id", params![], |r| {
                    Ok(Widget {
                        id: r.get(0)?,
                        name: r.get(1)?,
                    })
                })
            })
            .await?;
        Ok(Json(WidgetPage {
            items,
            next_cursor: None,
        }))
    }

    /// Create a widget
    #[oai(path = "/", method = "post", operation_id = "createWidget")]
    async fn create(&self, body: Json<NewWidget>) -> Result<Json<Widget>> {
        let name = body.name.trim().to_string();
        if name.is_empty() {
            return Err(Error::invalid("name", "must not be empty"));
        }
        let id = uuid_like();
        let platform = self.platform.clone();
        let (fail_times, panic) = (body.fail_times, body.panic);
        let widget_id = id.clone();
        let widget_name = name.clone();
        self.platform
            .db()
            .write(move |tx| {
                let inserted = tx.execute(
                    "INSERT INTO widgets (id, name) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                    params![widget_id, widget_name],
                )?;
                if inserted == 0 {
                    return Err(Error::Conflict("a widget with this name exists".into()));
                }
                platform.events().publish(
                    tx,
                    &Event::new(
                        "widget.created",
                        json!({"id": widget_id, "fail_times": fail_times, "panic": panic}),
                    ),
                )
            })
            .await?;
        Ok(Json(Widget { id, name }))
    }

    /// Panic on purpose
    #[oai(path = "/panic", method = "get", operation_id = "panicWidget")]
    async fn panic(&self) -> Json<Widget> {
        panic!("secret internal detail");
    }

    /// Answer slowly
    #[oai(path = "/slow", method = "get", operation_id = "slowWidget")]
    async fn slow(&self, ms: Query<u64>) -> Json<Widget> {
        tokio::time::sleep(Duration::from_millis(ms.0)).await;
        Json(Widget {
            id: "slow".into(),
            name: "slow".into(),
        })
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("w{:08}", NEXT.fetch_add(1, Ordering::SeqCst))
}
