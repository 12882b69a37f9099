//! The accept loop: PiCloud's listeners, one HTTP/1.1 connection task each, graceful shutdown.
//!
//! Our own loop rather than `axum::serve`, for what axum does not offer:
//! - a connection is served by the surface its listener (and `Host`) names ([`crate::origins`]);
//! - the answers hyper writes by itself when it cannot parse a request (400, 414, 431) get the
//!   API's JSON error shape, through [`JsonParseErrors`] around the socket;
//! - slow clients are cut off ([`crate::slow_clients`]): hyper's header-read timeout, and a
//!   minimum rate for request bodies.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tower_service::Service;

use crate::error::{ApiError, ErrorCode};
use crate::origins::Origins;
use crate::slow_clients::{HttpTimeouts, MinRateBody};

/// The sockets PiCloud answers on.
pub struct Listeners {
    /// Tenants' routes (and the admin surface for requests to `PICLOUD_ADMIN_HOST`).
    pub public: TcpListener,
    /// The admin surface alone (`PICLOUD_ADMIN_ADDR`).
    pub admin: Option<TcpListener>,
}

/// The two routers, and how a request on the public listener picks one.
#[derive(Clone)]
pub(crate) struct Surfaces {
    pub public: Router,
    pub admin: Router,
    pub origins: Arc<Origins>,
    pub timeouts: HttpTimeouts,
}

#[derive(Debug, Clone, Copy)]
enum Listener {
    Public,
    Admin,
}

/// Accepts on every listener until `shutdown` completes, then stops accepting and waits for the
/// open connections to finish their requests.
pub(crate) async fn run(
    listeners: Listeners,
    surfaces: Surfaces,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let (accepted, listener) = tokio::select! {
            accepted = listeners.public.accept() => (accepted, Listener::Public),
            accepted = accept(listeners.admin.as_ref()) => (accepted, Listener::Admin),
            () = &mut shutdown => break,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(err) if is_connection_error(&err) => continue,
            Err(err) => {
                // Out of file descriptors, for one: wait rather than spin.
                tracing::error!("cannot accept a connection: {err}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(surfaces.timeouts.header)
            .serve_connection(
                TokioIo::new(JsonParseErrors::new(stream)),
                ConnectionService {
                    surfaces: surfaces.clone(),
                    listener,
                    remote,
                },
            );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::trace!("connection from {remote} ended: {err}");
            }
        });
    }
    drop(listeners);
    graceful.shutdown().await;
    Ok(())
}

/// The admin listener's next connection; never, without one.
async fn accept(listener: Option<&TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Errors of one connection (the peer gave up during the handshake), not of the listener.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves one connection's requests with the surface they are for.
#[derive(Clone)]
struct ConnectionService {
    surfaces: Surfaces,
    listener: Listener,
    remote: SocketAddr,
}

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = <Router as Service<Request<Body>>>::Future;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let timeouts = self.surfaces.timeouts;
        let mut request = request.map(|body| {
            if body.is_end_stream() {
                Body::new(body)
            } else {
                Body::new(MinRateBody::new(body, timeouts))
            }
        });
        request.extensions_mut().insert(ConnectInfo(self.remote));
        let admin = match self.listener {
            Listener::Admin => true,
            Listener::Public => self.surfaces.origins.is_admin_request(request.headers()),
        };
        let mut router = if admin {
            self.surfaces.admin.clone()
        } else {
            self.surfaces.public.clone()
        };
        router.call(request)
    }
}

/// The socket of one connection, which gives hyper's own answers to requests it cannot parse the
/// API's JSON error shape.
///
/// hyper answers a request it cannot parse by itself — `400` (not HTTP), `414` (the URI is too
/// long) or `431` (the head is too large) — with a head alone, and then closes the connection.
/// A write of exactly that shape ([`hyper_error_status`]) is held back: when the connection then
/// ends, it was hyper's answer, and the same status with a JSON body is written in its place;
/// when anything else is written first, the held bytes go out unchanged, in order. So a
/// response body that happens to end in those bytes is never altered on a connection that goes
/// on: nothing written for one request can spill into the answer to another.
struct JsonParseErrors {
    inner: TcpStream,
    /// A write that looked like hyper's error answer, reported as written but not sent yet.
    held: Option<Held>,
    /// Bytes that must reach the socket before anything else, and how many of them have.
    owed: Vec<u8>,
    owed_written: usize,
}

struct Held {
    bytes: Vec<u8>,
    status: u16,
}

impl JsonParseErrors {
    fn new(inner: TcpStream) -> Self {
        Self {
            inner,
            held: None,
            owed: Vec::new(),
            owed_written: 0,
        }
    }

    /// Sends what is owed: released held bytes, or the JSON answer.
    fn poll_owed(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.owed_written < self.owed.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.owed[self.owed_written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.owed_written += n;
        }
        self.owed.clear();
        self.owed_written = 0;
        Poll::Ready(Ok(()))
    }

    /// Something else is written after a held write: it was not hyper's answer, so it is owed
    /// as it was.
    fn release_held(&mut self) {
        if let Some(held) = self.held.take() {
            self.owed.extend_from_slice(&held.bytes);
        }
    }

    /// Holds `buf` back when it looks like hyper's error answer.
    fn hold(&mut self, buf: &[u8]) -> bool {
        let Some(status) = hyper_error_status(buf) else {
            return false;
        };
        self.held = Some(Held {
            bytes: buf.to_vec(),
            status,
        });
        true
    }
}

impl Drop for JsonParseErrors {
    /// The connection ends with a held write: it was hyper's answer. The JSON answer is small
    /// and the socket's buffer empty, so one non-blocking write sends it.
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            let _ = self.inner.try_write(&json_answer(held.status));
        }
    }
}

/// The status of `head` when it looks like one of hyper's own error answers: a status line of
/// 400, 414 or 431 and no header but `connection: close`, `content-length: 0` and `date`, ending
/// the write. (PiCloud's routers always add a content type or an execution id to theirs.)
fn hyper_error_status(head: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(head).ok()?;
    let rest = text.strip_prefix("HTTP/1.1 ")?;
    let status: u16 = rest.get(..3)?.parse().ok()?;
    if !matches!(status, 400 | 414 | 431) {
        return None;
    }
    let head = rest.strip_suffix("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    lines.next()?; // the rest of the status line
    let mut saw_length = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "content-length" if value.trim() == "0" => saw_length = true,
            "connection" if value.trim() == "close" => {}
            "date" => {}
            _ => return None,
        }
    }
    saw_length.then_some(status)
}

/// The JSON answer standing for hyper's error answer of `status`.
fn json_answer(status: u16) -> Vec<u8> {
    let error = match status {
        414 => ApiError::new(
            ErrorCode::UriTooLong,
            "the request's URL is longer than this server accepts",
        ),
        431 => ApiError::new(
            ErrorCode::HeadersTooLarge,
            "the request's headers are larger, or more numerous, than this server accepts",
        ),
        _ => ApiError::new(
            ErrorCode::InvalidRequest,
            "the request is not valid HTTP/1.1; check its request line and headers",
        ),
    };
    let body = error.body_json();
    let reason = match status {
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        _ => "Bad Request",
    };
    let mut answer = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    answer
}

impl AsyncRead for JsonParseErrors {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for JsonParseErrors {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.release_held();
        ready!(this.poll_owed(cx))?;
        if this.hold(buf) {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.release_held();
        ready!(this.poll_owed(cx))?;
        let mut written = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (written.next(), written.next()) {
            if this.hold(only) {
                return Poll::Ready(Ok(only.len()));
            }
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_owed(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(held) = self.held.take() {
            self.owed.extend_from_slice(&json_answer(held.status));
        }
        ready!(self.poll_owed(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_bodiless_400_414_or_431_with_nothing_but_length_and_date_is_hypers() {
        let date = "date: Sun, 06 Dec 2026 05:00:00 GMT\r\n";
        for status in [400, 414, 431] {
            let head = format!(
                "HTTP/1.1 {status} Whatever\r\nconnection: close\r\ncontent-length: 0\r\n{date}\r\n"
            );
            assert_eq!(
                hyper_error_status(head.as_bytes()),
                Some(status),
                "hyper's own {status}"
            );
        }
        for head in [
            format!("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n{date}\r\n"),
            format!("HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n{date}\r\n"),
            format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-picloud-execution-id: x\r\n{date}\r\n"),
            format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n{date}\r\n{{}}"),
            format!("HTTP/1.1 431 Too Large\r\ncontent-length: 0\r\n{date}\r\nHTTP/1.1 200 OK\r\n"),
            format!("HTTP/1.1 431 Too Large\r\n{date}\r\n"),
        ] {
            assert_eq!(
                hyper_error_status(head.as_bytes()),
                None,
                "not hyper's own answer: {head:?}"
            );
        }
    }

    /// A connected pair: the wrapped server side and the client side.
    async fn socket_pair() -> (JsonParseErrors, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (JsonParseErrors::new(server), client)
    }

    async fn received(mut client: TcpStream) -> Vec<u8> {
        use tokio::io::AsyncReadExt as _;
        let mut bytes = Vec::new();
        client.read_to_end(&mut bytes).await.expect("read");
        bytes
    }

    const LOOKALIKE: &[u8] =
        b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

    // A response body may end in the very bytes of hyper's error answer; when the connection
    // goes on, they reach the client unchanged and in order.
    #[tokio::test]
    async fn a_lookalike_followed_by_more_writes_goes_out_unchanged() {
        use tokio::io::AsyncWriteExt as _;
        let (mut server, client) = socket_pair().await;
        server.write_all(b"body: ").await.expect("write");
        server.write_all(LOOKALIKE).await.expect("write");
        server.write_all(b"and more").await.expect("write");
        server.shutdown().await.expect("shutdown");
        drop(server);
        let mut expected = b"body: ".to_vec();
        expected.extend_from_slice(LOOKALIKE);
        expected.extend_from_slice(b"and more");
        assert_eq!(received(client).await, expected, "every byte, in order");
    }

    // hyper's answer is the last write before the connection ends: JSON goes out instead, both
    // when hyper shuts the socket down and when it only drops it.
    #[tokio::test]
    async fn hypers_answer_at_the_end_of_a_connection_becomes_json() {
        use tokio::io::AsyncWriteExt as _;
        for shut_down in [true, false] {
            let (mut server, client) = socket_pair().await;
            server.write_all(LOOKALIKE).await.expect("write");
            if shut_down {
                server.shutdown().await.expect("shutdown");
            }
            drop(server);
            assert_eq!(
                received(client).await,
                json_answer(400),
                "the JSON answer (shut down: {shut_down})"
            );
        }
    }

    #[test]
    fn the_replacement_is_json_in_the_api_error_shape_with_a_matching_length() {
        let answer = String::from_utf8(json_answer(431)).expect("text");
        let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
        assert!(head.starts_with("HTTP/1.1 431 "), "the same status: {head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "the length is the body's: {head}"
        );
        let json: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(
            json["error"]["code"], "headers_too_large",
            "the API's error shape: {json}"
        );
    }
}
