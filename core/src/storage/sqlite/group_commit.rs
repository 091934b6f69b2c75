//! Group commit for the async writers of one pool ([`crate::storage::db::Db::write`],
//! [`crate::tenancy::TenantDb::write`]).
//!
//! SQLite has one writer, and most of a small write's cost is its commit: every page
//! it touched is appended to the WAL again (the table leaf, each index, the totals
//! row), a pwrite per page. Writers therefore queue their work; whoever takes the
//! file's write gate runs everything queued so far in one immediate transaction,
//! each writer's work inside its own savepoint, commits once, and only then answers
//! them all. A writer whose work fails has its savepoint rolled back and gets its own
//! error; the others are unaffected. No writer is answered before the commit that
//! holds its work, so an acknowledged write is exactly as durable as before.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use rusqlite::{Transaction, TransactionBehavior};

use crate::storage::sql::Sql;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::storage::sqlite::db::{DbConn, SqliteDb as Db, async_write_gate, write_gate};

/// The most writers committed together: bounds what one batch adds to a writer's wait.
const MAX_BATCH: usize = 128;

/// How a writer is answered once the outcome of the commit is known.
type Answer = Box<dyn FnOnce(std::result::Result<(), &str>) + Send>;
/// One writer's work: run in the shared transaction (or refused without running, when
/// there is no transaction to run in), giving back how to answer the writer.
type Work = Box<dyn FnOnce(std::result::Result<&Transaction<'_>, &str>) -> Answer + Send>;

struct Pending {
    id: u64,
    /// The org a tenant connection is bound to while this work runs.
    org: Option<String>,
    work: Work,
}

/// The writers of one pool waiting for a batch.
#[derive(Default)]
pub(crate) struct Queue {
    pending: Mutex<VecDeque<Pending>>,
    next_id: AtomicU64,
    /// Committed batches, and the writers they answered, since start (/metrics).
    batches: AtomicU64,
    writers: AtomicU64,
}

impl Queue {
    pub(crate) fn committed(&self) -> (u64, u64) {
        (
            self.batches.load(Ordering::Relaxed),
            self.writers.load(Ordering::Relaxed),
        )
    }
}

/// Takes a writer's work back out of the queue when its request is dropped before a
/// batch took it (a client that went away), so it never runs later unasked.
struct Withdraw<'a> {
    queue: &'a Queue,
    id: u64,
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        self.queue.pending.lock().retain(|p| p.id != self.id);
    }
}

/// Runs `f` in a savepoint of a group-committed immediate transaction on a connection
/// of `db` (bound to `org` on a tenant pool); answers after the commit. `f`'s writes
/// are rolled back when it returns Err (or panics), and every other writer's stand.
pub(crate) async fn write<T, F>(db: &Db, org: Option<Uuid>, f: F) -> Result<T>
where
    F: FnOnce(&Sql<'_>) -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    let (send, mut answer) = oneshot::channel::<Result<T>>();
    let work: Work = Box::new(move |tx| {
        let outcome = match tx {
            Ok(tx) => in_savepoint(tx, |tx| f(&Sql::of(tx))),
            Err(why) => Err(Error::Unavailable(format!("database unavailable: {why}"))),
        };
        Box::new(move |committed| {
            let reply = match (outcome, committed) {
                (Err(e), _) => Err(e),
                (Ok(value), Ok(())) => Ok(value),
                (Ok(_), Err(why)) => Err(Error::internal(format!(
                    "the transaction was not committed: {why}"
                ))),
            };
            // The writer may have gone away; its work is committed all the same.
            let _ = send.send(reply);
        })
    });
    let queue = db.queue();
    let id = queue.next_id.fetch_add(1, Ordering::Relaxed);
    queue.pending.lock().push_back(Pending {
        id,
        org: org.map(|o| o.to_string()),
        work,
    });
    let _withdraw = Withdraw { queue, id };
    let gate = async_write_gate(db.path());
    loop {
        tokio::select! {
            biased;
            reply = &mut answer => {
                return reply.map_err(|_| Error::internal("a batch dropped a write unanswered"))?;
            }
            turn = gate.clone().lock_owned() => {
                // Batches answer before they release the gate, so this writer's work is
                // either answered already or still queued: run what is queued.
                let db = db.clone();
                tokio::task::spawn_blocking(move || {
                    let _turn = turn;
                    run_batch(&db);
                })
                .await?;
            }
        }
    }
}

/// Runs `f` between `SAVEPOINT` and `RELEASE`, or rolls back to the savepoint.
fn in_savepoint<T>(tx: &Transaction<'_>, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
    tx.prepare_cached("SAVEPOINT plinth_write")?.execute([])?;
    let outcome = catch_unwind(AssertUnwindSafe(|| f(tx)))
        .unwrap_or_else(|_| Err(Error::internal("a write panicked; its work was rolled back")));
    match outcome {
        Ok(value) => {
            tx.prepare_cached("RELEASE plinth_write")?.execute([])?;
            Ok(value)
        }
        Err(e) => {
            // Failing here too means the transaction is gone: `run_in_transaction`
            // sees it (is_autocommit) and fails the batch.
            let _ = tx
                .prepare_cached("ROLLBACK TO plinth_write")
                .and_then(|mut s| s.execute([]));
            let _ = tx
                .prepare_cached("RELEASE plinth_write")
                .and_then(|mut s| s.execute([]));
            Err(e)
        }
    }
}

/// Runs up to [`MAX_BATCH`] queued writers in one transaction and answers them. The
/// caller holds the file's async write gate.
fn run_batch(db: &Db) {
    let batch: Vec<Pending> = {
        let mut queue = db.queue().pending.lock();
        let n = queue.len().min(MAX_BATCH);
        queue.drain(..n).collect()
    };
    if batch.is_empty() {
        return;
    }
    let conn = match db.conn() {
        Ok(conn) => conn,
        Err(e) => {
            let why = e.to_string();
            return answer(refuse(batch, &why), Err(&why));
        }
    };
    let (answers, committed) = {
        // Orders the batch after writers on blocking threads (migrations, CLI tools).
        let sync_gate = write_gate(&conn);
        let _turn = sync_gate.lock();
        run_in_transaction(db, &conn, batch)
    };
    // Returning the connection announces the committed changes (see crate::storage::changes):
    // caches must have dropped what the batch changed before any writer answers.
    drop(conn);
    if committed.is_ok() {
        let queue = db.queue();
        queue.batches.fetch_add(1, Ordering::Relaxed);
        queue.writers.fetch_add(answers.len() as u64, Ordering::Relaxed);
    }
    answer(answers, committed.as_ref().map(|_| ()).map_err(String::as_str));
}

fn run_in_transaction(
    db: &Db,
    conn: &DbConn,
    batch: Vec<Pending>,
) -> (Vec<Answer>, std::result::Result<(), String>) {
    let tx = match Transaction::new_unchecked(conn, TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let why = e.to_string();
            return (refuse(batch, &why), Err(why));
        }
    };
    let _unbind = Unbind(conn);
    let mut answers = Vec::with_capacity(batch.len());
    let mut rest = batch.into_iter();
    for pending in rest.by_ref() {
        conn.bind(pending.org);
        answers.push((pending.work)(Ok(&tx)));
        // Some failures (I/O, a full disk) end the whole transaction, not only the
        // savepoint: the work run so far is gone, so say so, and leave the writers not
        // yet run to the next batch.
        if tx.is_autocommit() {
            let mut queue = db.queue().pending.lock();
            for unrun in rest.rev() {
                queue.push_front(unrun);
            }
            return (
                answers,
                Err("it was rolled back by a failure in the same batch".into()),
            );
        }
    }
    let committed = tx.commit().map_err(|e| e.to_string());
    (answers, committed)
}

/// Unbinds the connection however the batch ends, so it never goes back to the pool
/// bound to the last writer's org.
struct Unbind<'a>(&'a DbConn);

impl Drop for Unbind<'_> {
    fn drop(&mut self) {
        self.0.bind(None);
    }
}

fn answer(answers: Vec<Answer>, committed: std::result::Result<(), &str>) {
    for answer in answers {
        answer(committed);
    }
}

/// Answers work that never ran with why it could not.
fn refuse(batch: Vec<Pending>, why: &str) -> Vec<Answer> {
    batch
        .into_iter()
        .map(|pending| (pending.work)(Err(why)))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;
    use crate::storage::changes::Changes;
    use crate::storage::db::Kind;

    type TestWork = Box<dyn FnOnce(&Sql<'_>) -> Result<i64> + Send>;

    fn open() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(
            &dir.path().join("t.db"),
            4,
            Kind::Root,
            Arc::new(Changes::default()),
        );
        db.conn()
            .expect("conn")
            .execute_batch("CREATE TABLE t (n INTEGER NOT NULL UNIQUE)")
            .expect("schema");
        (dir, db)
    }

    fn rows(db: &Db) -> Vec<i64> {
        let conn = db.conn().expect("conn");
        let mut stmt = conn.prepare("SELECT n FROM t ORDER BY n").expect("prepare");
        stmt.query_map([], |r| r.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows")
    }

    async fn queued(db: &Db, n: usize) {
        while db.queue().pending.lock().len() < n {
            tokio::task::yield_now().await;
        }
    }

    /// Queues one writer per closure, in order, while the gate is held, then lets
    /// them run as one batch; returns their answers in the same order.
    async fn batch(db: &Db, works: Vec<TestWork>) -> Vec<Result<i64>> {
        let held = async_write_gate(db.path()).lock_owned().await;
        let mut tasks = Vec::new();
        for (i, work) in works.into_iter().enumerate() {
            let db2 = db.clone();
            tasks.push(tokio::spawn(async move { write(&db2, None, work).await }));
            queued(db, i + 1).await;
        }
        drop(held);
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.expect("join"));
        }
        answers
    }

    fn insert(n: i64) -> TestWork {
        Box::new(move |tx| {
            tx.execute("INSERT INTO t (n) VALUES (?1)", crate::params![n])?;
            Ok(n)
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_commit_for_the_batch_and_only_failed_work_is_rolled_back() {
        let (_dir, db) = open();
        let commits = Arc::new(AtomicUsize::new(0));
        let seen = commits.clone();
        db.changes().watch("t", move || {
            seen.fetch_add(1, Ordering::SeqCst);
        });
        let mut works = Vec::new();
        for n in 0..30 {
            works.push(match n % 10 {
                // Writes, then refuses: its row must not stay.
                3 => Box::new(move |tx: &Sql<'_>| {
                    let tx = crate::storage::sqlite::bind::sqlite_of(tx).expect("sqlite");
                    tx.execute("INSERT INTO t (n) VALUES (?1)", [n])?;
                    Err(Error::Conflict(format!("refused {n}")))
                }) as TestWork,
                // A constraint violation (row 0 is already written in this batch).
                5 => Box::new(|tx: &Sql<'_>| {
                    let tx = crate::storage::sqlite::bind::sqlite_of(tx).expect("sqlite");
                    tx.execute("INSERT INTO t (n) VALUES (0)", [])?;
                    Ok(0)
                }),
                7 => Box::new(move |tx: &Sql<'_>| {
                    let tx = crate::storage::sqlite::bind::sqlite_of(tx).expect("sqlite");
                    tx.execute("INSERT INTO t (n) VALUES (?1)", [n])?;
                    panic!("a bug in one writer")
                }),
                _ => insert(n),
            });
        }
        let answers = batch(&db, works).await;
        let mut expected = Vec::new();
        for (n, answer) in (0..30).zip(&answers) {
            match n % 10 {
                3 => assert!(
                    matches!(answer, Err(Error::Conflict(m)) if *m == format!("refused {n}")),
                    "{n}: {answer:?}"
                ),
                5 | 7 => assert!(matches!(answer, Err(Error::Internal(_))), "{n}: {answer:?}"),
                _ => {
                    assert_eq!(answer.as_ref().ok(), Some(&n));
                    expected.push(n);
                }
            }
        }
        assert_eq!(rows(&db), expected);
        assert_eq!(
            commits.load(Ordering::SeqCst),
            1,
            "the 30 writers were committed together"
        );
        assert_eq!(db.queue().committed(), (1, 30));
        // The connection is usable afterwards: no savepoint or transaction left open.
        assert_eq!(write(&db, None, insert(100)).await.ok(), Some(100));
        assert_eq!(rows(&db).last(), Some(&100));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failure_that_ends_the_transaction_fails_the_work_before_it_and_requeues_the_rest() {
        let (_dir, db) = open();
        let answers = batch(
            &db,
            vec![
                insert(1),
                Box::new(|tx: &Sql<'_>| {
                    let tx = crate::storage::sqlite::bind::sqlite_of(tx).expect("sqlite");
                    tx.execute_batch("ROLLBACK")?;
                    Ok(2)
                }),
                insert(3),
            ],
        )
        .await;
        assert!(
            matches!(&answers[0], Err(Error::Internal(e)) if e.to_string().contains("rolled back")),
            "{:?}",
            answers[0]
        );
        assert!(answers[1].is_err(), "{:?}", answers[1]);
        assert_eq!(answers[2].as_ref().ok(), Some(&3));
        assert_eq!(rows(&db), vec![3]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_dropped_before_its_batch_never_runs() {
        let (_dir, db) = open();
        let held = async_write_gate(db.path()).lock_owned().await;
        let gone = tokio::time::timeout(Duration::from_millis(20), write(&db, None, insert(1))).await;
        assert!(gone.is_err(), "the write waited for the gate");
        assert!(
            db.queue().pending.lock().is_empty(),
            "the dropped writer left the queue"
        );
        drop(held);
        assert_eq!(write(&db, None, insert(2)).await.ok(), Some(2));
        assert_eq!(rows(&db), vec![2]);
    }
}
