//! Idle and stalled clients: a connection on which the server waits to read and
//! that sends nothing (and receives nothing) for the idle timeout is closed, whether
//! it sits between keep-alive requests or stopped half-way through one. poem's own
//! idle timeout shuts connections down gracefully, which waits forever for a
//! request that stopped half-way (measured: never closed). This fails the read
//! instead, so hyper drops the connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use poem::http::uri::Scheme;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Wraps an acceptor so each connection gets a stall deadline.
pub struct StallGuard<A> {
    inner: A,
    timeout: Duration,
}

impl<A> StallGuard<A> {
    pub fn new(inner: A, timeout: Duration) -> Self {
        StallGuard { inner, timeout }
    }
}

impl<A: Acceptor> Acceptor for StallGuard<A> {
    type Io = Guarded<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        let (io, local, remote, scheme) = self.inner.accept().await?;
        let now = Instant::now();
        let io = Guarded {
            io,
            timeout: self.timeout,
            deadline: Box::pin(tokio::time::sleep_until(now + self.timeout)),
            last_activity: now,
        };
        Ok((io, local, remote, scheme))
    }
}

/// A connection whose reads fail once it has been silent for the timeout.
///
/// Activity only stamps `last_activity`; the timer is moved when it fires early.
/// Resetting it on every request instead costs a lock on tokio's timer wheel per
/// request (poem's own idle timeout, which wakes a watchdog task on every read and
/// write, is not used for the same reason).
pub struct Guarded<T> {
    io: T,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    last_activity: Instant,
}

impl<T> Guarded<T> {
    fn activity(&mut self) {
        self.last_activity = Instant::now();
    }

    /// Ready when the connection has been silent for the timeout.
    fn poll_stalled(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.deadline.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let due = self.last_activity + self.timeout;
            if Instant::now() >= due {
                return Poll::Ready(());
            }
            // Activity since the timer was set: wait for the rest of the silence.
            self.deadline.as_mut().reset(due);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.activity();
                }
                Poll::Ready(result)
            }
            Poll::Pending => match self.poll_stalled(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client sent nothing for the idle timeout",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = polled
            && n > 0
        {
            self.activity();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
