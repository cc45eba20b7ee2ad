//! A few lines of HTTP/1.1 client for the benchmarks that post webhooks, so that the load
//! generator costs the shared CPU as little as possible.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A keep-alive HTTP/1.1 connection that posts one request at a time. A few lines of client,
/// so that the load generator costs the shared CPU as little as possible.
pub struct Conn {
    addr: SocketAddr,
    path: &'static str,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    /// A connection to `addr` that posts to `path`; it connects on first use.
    pub fn new(addr: SocketAddr, path: &'static str) -> Self {
        Conn {
            addr,
            path,
            stream: None,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Posts `body` signed with `header`; returns the status and the body. Reconnects once if
    /// the server closed the connection meanwhile (a redelivery is answered as a duplicate).
    pub async fn post(&mut self, header: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut request = format!(
            "POST {} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nPientegra-Signature: {header}\r\nContent-Length: {}\r\n\r\n",
            self.path,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        for attempt in 0..2 {
            if self.stream.is_none() {
                let s = TcpStream::connect(self.addr).await.expect("connect");
                s.set_nodelay(true).expect("nodelay");
                self.stream = Some(s);
            }
            match self.exchange(&request).await {
                Some(answer) => return answer,
                None if attempt == 0 => self.stream = None,
                None => break,
            }
        }
        panic!("the receiver closed the connection twice");
    }

    async fn exchange(&mut self, request: &[u8]) -> Option<(u16, Vec<u8>)> {
        let stream = self.stream.as_mut()?;
        stream.write_all(request).await.ok()?;
        self.buf.clear();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end]).ok()?;
                let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                let close = head.to_ascii_lowercase().contains("connection: close");
                while self.buf.len() < end + 4 + length {
                    let n = stream.read(&mut chunk).await.ok()?;
                    if n == 0 {
                        return None;
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                let body = self.buf[end + 4..end + 4 + length].to_vec();
                if close {
                    self.stream = None;
                }
                return Some((status, body));
            }
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}
