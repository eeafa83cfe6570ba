//! The `--metrics ADDR` endpoint: `GET /metrics` in the Prometheus text format, served by axum
//! on a thread of its own, so a scrape is answered at once whatever the tracer is doing (a
//! /proc scan, a burst of events) and never slows the event loop down.
//!
//! The address is checked and bound at start ([`bind`]), before anything is traced: a port in
//! use is one line and exit status 6, not a tracer that runs without its metrics.
//!
//! Connections are bounded ([`MAX_CONNECTIONS`] at once, each closed after
//! [`CONNECTION_LIFETIME`]): the endpoint shares the tracer's fd table, and a local user
//! opening connections by the thousand must not make /proc reads fail with EMFILE (which would
//! end live sessions). Beyond the bound, connections wait in the kernel's backlog.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, ToSocketAddrs},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, http::header, response::IntoResponse, routing::get};
use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::{OwnedSemaphorePermit, Semaphore},
};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// A connection is closed after this long (Prometheus simply opens another).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// A listener that accepts a connection only while fewer than [`MAX_CONNECTIONS`] are open.
struct Bounded {
    listener: tokio::net::TcpListener,
    slots: Arc<Semaphore>,
}

/// An accepted connection holding its slot, closed once its lifetime is over.
struct BoundedIo {
    stream: tokio::net::TcpStream,
    deadline: Pin<Box<tokio::time::Sleep>>,
    _slot: OwnedSemaphorePermit,
}

impl axum::serve::Listener for Bounded {
    type Io = BoundedIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (BoundedIo, SocketAddr) {
        loop {
            // The semaphore is never closed.
            let Ok(slot) = Arc::clone(&self.slots).acquire_owned().await else { continue };
            match self.listener.accept().await {
                Ok((stream, addr)) => {
                    let deadline = Box::pin(tokio::time::sleep(CONNECTION_LIFETIME));
                    return (BoundedIo { stream, deadline, _slot: slot }, addr);
                }
                // EMFILE and the like: let the moment pass rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

impl AsyncRead for BoundedIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for BoundedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

use super::metrics::Metrics;
use crate::error::{AppError, AppResult};

/// `--metrics ADDR`: `PORT` (loopback: metrics are not published unless asked), `HOST:PORT`,
/// `IP:PORT` or `[IPv6]:PORT`.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    match s.to_socket_addrs() {
        Ok(mut addrs) => addrs.next().ok_or_else(|| format!("--metrics {s:?}: the name resolves to no address")),
        Err(_) => Err(format!("invalid --metrics address {s:?}: give PORT, HOST:PORT or [IPv6]:PORT, e.g. 9464 or 127.0.0.1:9464")),
    }
}

/// Binds the endpoint's socket (before tracing starts).
pub fn bind(addr: SocketAddr) -> AppResult<TcpListener> {
    let l = TcpListener::bind(addr).map_err(|e| AppError::BadInput(format!("--metrics {addr}: cannot listen: {e}")))?;
    l.set_nonblocking(true).map_err(|e| AppError::Other(anyhow::anyhow!("--metrics {addr}: {e}")))?;
    Ok(l)
}

/// Serves `metrics` on `listener` from a thread of its own, for the life of the process.
pub fn spawn(listener: TcpListener, metrics: Metrics) -> AppResult<()> {
    let app = Router::new()
        .route("/metrics", get(move || std::future::ready(([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.encode()).into_response())))
        .route("/", get(|| std::future::ready("pty-trace: metrics at /metrics\n")));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AppError::Other(anyhow::anyhow!("the metrics server's runtime: {e}")))?;
    std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || {
            rt.block_on(async move {
                let served = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => axum::serve(Bounded { listener: l, slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)) }, app).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = served {
                    // Tracing goes on; the scrape failing is what Prometheus alerts on (`up`).
                    eprintln!("pty-trace: the metrics endpoint stopped: {e}");
                }
            })
        })
        .map_err(|e| AppError::Other(anyhow::anyhow!("starting the metrics thread: {e}")))?;
    Ok(())
}

/// `--metrics ADDR`: parse, bind and serve; returns the metrics to update.
pub fn start(addr: &str, probes: &str, max_processes: usize) -> AppResult<Metrics> {
    let addr = parse_addr(addr).map_err(AppError::BadInput)?;
    let listener = bind(addr)?;
    let metrics = Metrics::new(probes, max_processes);
    spawn(listener, metrics.clone())?;
    Ok(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(parse_addr("9464").unwrap(), "127.0.0.1:9464".parse().unwrap());
        assert_eq!(parse_addr("0.0.0.0:9464").unwrap(), "0.0.0.0:9464".parse().unwrap());
        assert_eq!(parse_addr("[::1]:9464").unwrap(), "[::1]:9464".parse().unwrap());
        assert_eq!(parse_addr("localhost:9464").unwrap().port(), 9464);
        for bad in ["", "port", "99999", "1.2.3.4", "1.2.3.4:x"] {
            let e = parse_addr(bad).unwrap_err();
            assert!(e.contains("--metrics"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_port_in_use_is_one_line_and_bad_input() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = bind(held.local_addr().unwrap()).unwrap_err();
        assert_eq!(e.exit_code(), crate::error::exit_code::BAD_INPUT);
        assert!(e.to_string().contains("cannot listen"), "{e}");
    }

    /// More idle connections than the bound: they wait in the backlog holding no fd of ours,
    /// and a scrape is answered once a slot frees.
    #[test]
    fn idle_connections_are_bounded() {
        use std::io::{Read, Write};
        let l = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        spawn(l, Metrics::new("fentry", 20)).unwrap();
        let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
        let before = fds();
        let idle: Vec<std::net::TcpStream> = (0..MAX_CONNECTIONS * 4).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(300));
        // Ours (the idle client ends) plus at most the bound on the server side.
        let grown = fds() - before;
        assert!(grown <= idle.len() + MAX_CONNECTIONS, "{grown} fds for {} idle connections", idle.len());
        drop(idle);
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    }

    #[test]
    fn serves_the_text_format_over_http() {
        use std::io::{Read, Write};
        let l = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        let m = Metrics::new("fentry", 20);
        spawn(l, m).unwrap();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.contains("content-type: text/plain; version=0.0.4; charset=utf-8"), "{resp}");
        assert!(resp.contains("pty_trace_build_info{version="), "{resp}");
    }
}
