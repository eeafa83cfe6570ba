//! The `--metrics ADDR` endpoint: `GET /metrics` in the Prometheus text format, served by axum
//! on a thread of its own, so a scrape is answered at once whatever the tracer is doing (a
//! /proc scan, a burst of events) and never slows the event loop down.
//!
//! The address is checked and bound at start ([`bind`]), before anything is traced: a port in
//! use is one line and exit status 6, not a tracer that runs without its metrics.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, ToSocketAddrs};

use axum::{Router, http::header, response::IntoResponse, routing::get};
use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

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
                    Ok(l) => axum::serve(l, app).await,
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
