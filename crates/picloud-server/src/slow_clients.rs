//! Slow clients are cut off (#13): a request head must arrive within a time limit (hyper's
//! header-read timeout, set in `listen`; it also bounds how long a kept-alive connection may sit
//! idle), and a request body must keep up a minimum average rate once its grace period is over
//! ([`MinRateBody`]). A client that trickles a byte every few seconds no longer holds a
//! connection, a task and its buffers for as long as it likes.

use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

/// How slow a client may be. The defaults follow Apache's `mod_reqtimeout` (20 s for a head,
/// a body past 20 s at a minimum rate). hyper starts the head's clock when the connection is
/// ready for a head, so the same limit closes an idle kept-alive connection: a proxy in front
/// should keep its upstream connections idle for less (nginx: `keepalive_timeout` in the
/// `upstream` block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpTimeouts {
    /// A request's head must arrive within this time of the connection being ready for one (a
    /// new connection, or a kept-alive one after its last answer).
    pub header: Duration,
    /// A body may take this long whatever its rate.
    pub body_grace: Duration,
    /// Past the grace, a body must have arrived at this many bytes per second on average.
    pub body_min_bytes_per_sec: u64,
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        Self {
            header: Duration::from_secs(20),
            body_grace: Duration::from_secs(20),
            body_min_bytes_per_sec: 1024,
        }
    }
}

/// A request body that fails with [`BodyTooSlow`] when, past the grace period, it has arrived
/// slower than the minimum average rate.
pub(crate) struct MinRateBody {
    inner: Incoming,
    timeouts: HttpTimeouts,
    started: Instant,
    received: u64,
    /// Armed when the body first waits for the client: a body that arrives at once costs no
    /// timer.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl MinRateBody {
    pub(crate) fn new(inner: Incoming, timeouts: HttpTimeouts) -> Self {
        Self {
            inner,
            timeouts,
            started: Instant::now(),
            received: 0,
            deadline: None,
        }
    }

    /// Until when the bytes received so far keep the body within its rate.
    fn allowed_until(&self) -> Instant {
        let rate = self.timeouts.body_min_bytes_per_sec.max(1);
        let earned = Duration::from_secs_f64(self.received as f64 / rate as f64);
        self.started + self.timeouts.body_grace.max(earned)
    }
}

impl Body for MinRateBody {
    type Data = Bytes;
    type Error = Box<dyn Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.received += data.len() as u64;
                    let until = self.allowed_until();
                    if let Some(deadline) = self.deadline.as_mut() {
                        deadline.as_mut().reset(until);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let until = self.allowed_until();
                let deadline = self
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
                if deadline.as_mut().poll(cx).is_ready() {
                    let rate = self.timeouts.body_min_bytes_per_sec;
                    return Poll::Ready(Some(Err(Box::new(BodyTooSlow { rate }))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body that arrived slower than the minimum rate.
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived slower than {rate} bytes per second")]
pub(crate) struct BodyTooSlow {
    rate: u64,
}

/// Whether `err` (or one of its causes) is a [`BodyTooSlow`].
pub(crate) fn is_too_slow(err: &(dyn Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if err.is::<BodyTooSlow>() {
            return true;
        }
        cause = err.source();
    }
    false
}
