//! Stalled clients: a connection on which the server waits to read and that sends
//! nothing (and receives nothing) for the idle timeout is closed. poem's own idle
//! timeout shuts connections down gracefully, which waits forever for a request
//! that stopped half-way (a client holding a connection with half a request line:
//! measured, never closed). This fails the read instead, so hyper drops it.

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
        let io = Guarded {
            io,
            timeout: self.timeout,
            deadline: Box::pin(tokio::time::sleep(self.timeout)),
            armed: false,
        };
        Ok((io, local, remote, scheme))
    }
}

/// A connection whose reads fail once it has been silent for the timeout.
pub struct Guarded<T> {
    io: T,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    /// Whether the deadline runs (since the first read that found nothing).
    armed: bool,
}

impl<T> Guarded<T> {
    fn activity(&mut self) {
        self.armed = false;
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
            Poll::Pending => {
                if !self.armed {
                    let at = Instant::now() + self.timeout;
                    self.deadline.as_mut().reset(at);
                    self.armed = true;
                }
                match self.deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client sent nothing for the idle timeout",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
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
