//! Change notes from other processes: every node LISTENs on one channel that the
//! note trigger (see [`super::notes`]) NOTIFYs with the changed table's name, so a
//! commit on any node (or by any SQL client) empties the watching caches on every
//! node. PostgreSQL delivers notifications at commit, once per table and
//! transaction.
//!
//! The listener is a thread of its own with a dedicated connection (a pooled one
//! could not hold LISTEN; behind PgBouncer it must be a direct connection). When
//! the connection is lost, notes may have been missed: every watched cache is
//! emptied, the loss is counted, readiness reports the listener down until it is
//! back, and it reconnects with a growing pause.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::storage::changes::Changes;

/// The channel the note trigger notifies.
pub(crate) const CHANNEL: &str = "plinth_changes";

/// How long the listener waits for a notification before it checks that the
/// connection still answers.
const PING_EVERY: Duration = Duration::from_secs(1);

/// The listener's state, shared with readiness and metrics.
#[derive(Default)]
pub struct ListenerState {
    listening: AtomicBool,
    losses: AtomicU64,
    received: AtomicU64,
}

impl ListenerState {
    /// Whether the listener holds a live connection now.
    pub fn listening(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }

    /// Connections lost (or never made) since start.
    pub fn losses(&self) -> u64 {
        self.losses.load(Ordering::Relaxed)
    }

    /// Notifications received since start.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

/// Starts the listener thread; it runs for the life of the process.
pub(crate) fn spawn(config: postgres::Config, changes: Arc<Changes>) -> std::io::Result<Arc<ListenerState>> {
    let state = Arc::new(ListenerState::default());
    let shared = state.clone();
    std::thread::Builder::new()
        .name("plinth-pg-listen".into())
        .spawn(move || run(&config, &changes, &shared))?;
    Ok(state)
}

fn run(config: &postgres::Config, changes: &Changes, state: &ListenerState) {
    let mut pause = Duration::from_millis(100);
    loop {
        match listen(config, changes, state) {
            Ok(()) => return,
            Err(e) => {
                let was = state.listening.swap(false, Ordering::SeqCst);
                state.losses.fetch_add(1, Ordering::Relaxed);
                // Whatever changed meanwhile was not heard: start every cache over.
                changes.announce_all();
                if was {
                    tracing::warn!(error = %e, "the change listener lost its connection; caches emptied, reconnecting");
                } else {
                    tracing::debug!(error = %e, "the change listener could not connect");
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Listens until the connection fails.
fn listen(
    config: &postgres::Config,
    changes: &Changes,
    state: &ListenerState,
) -> Result<(), postgres::Error> {
    let mut client = config.connect(postgres::NoTls)?;
    client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
    // Changes made while no one listened were missed.
    changes.announce_all();
    state.listening.store(true, Ordering::SeqCst);
    tracing::info!("the change listener is listening");
    loop {
        let mut heard = Vec::new();
        {
            use postgres::fallible_iterator::FallibleIterator;
            let mut notifications = client.notifications();
            // Wait for one, then take whatever else already arrived, and announce:
            // never wait for a quiet moment before announcing.
            let first = notifications.timeout_iter(PING_EVERY).next()?;
            if let Some(first) = first {
                heard.push(first.payload().to_string());
                let mut arrived = notifications.iter();
                while let Some(note) = arrived.next()? {
                    heard.push(note.payload().to_string());
                }
            }
        }
        state.received.fetch_add(heard.len() as u64, Ordering::Relaxed);
        let noted = crate::storage::changes::Noted::default();
        for table in heard.iter().filter_map(|t| changes.table(t)) {
            noted.note(table);
        }
        noted.announce();
        if heard.is_empty() {
            // Quiet: make sure the connection is still there.
            client.simple_query("")?;
        }
    }
}
