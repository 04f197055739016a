//! [`Backend`]: a small HTTP backend for the node's nginx-rtmp-style callbacks, as a test
//! needs one that only listens: a std `TcpListener` on a thread, answering every request
//! `200 OK` and recording its path and form fields (decoded), in order.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use siprtmp_core::node::CallbackUrl;

/// One request the backend got.
#[derive(Debug, Clone)]
pub struct Got {
    /// The request's path (`/record_done`).
    pub path: String,
    /// Its form fields, decoded, in order.
    pub fields: Vec<(String, String)>,
}

impl Got {
    /// The first field `name`'s value.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A running backend (its thread lives as long as the test process).
pub struct Backend {
    /// Where it listens (loopback, a port from the OS).
    pub addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
}

impl Backend {
    /// Starts listening.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the backend");
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&got);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                serve(stream, &log);
            }
        });
        Self { addr, got }
    }

    /// The callback URL of `path` on this backend.
    pub fn url(&self, path: &str) -> CallbackUrl {
        CallbackUrl::parse(&format!("http://{}{path}", self.addr)).expect("a callback URL")
    }

    /// The requests to `path` so far.
    pub fn requests(&self, path: &str) -> Vec<Got> {
        let got = self.got.lock().unwrap();
        got.iter().filter(|g| g.path == path).cloned().collect()
    }
}

/// Reads one request, records it, answers 200.
fn serve(stream: TcpStream, log: &Mutex<Vec<Got>>) -> Option<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let fields = String::from_utf8_lossy(&body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(n), decode(v))
        })
        .collect();
    log.lock().unwrap().push(Got { path, fields });
    let mut stream = reader.into_inner();
    stream
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        .ok()
}

/// A form value (`%XX` escapes, `+` for a space) back to its text.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
