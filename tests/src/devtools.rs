//! Headless Chromium driven through the DevTools protocol, enough to load a page and evaluate
//! JavaScript in it: [`Chromium::launch`] starts the browser with a fresh profile and a
//! DevTools port the kernel picks, and [`Chromium::evaluate`] runs an expression in the page
//! over a minimal WebSocket client (RFC 6455: one unfragmented masked text frame out, text
//! frames in), so the suites need no WebSocket or browser-automation dependency.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The browser's executable (Debian package `chromium`; `scripts/test.sh` installs it).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// A headless Chromium showing one page, and a DevTools connection to that page.
pub struct Chromium {
    _browser: Browser,
    socket: TcpStream,
    next_id: u64,
}

impl Chromium {
    /// Starts Chromium on `url` with a fresh profile in `profile` (a scratch directory), and
    /// connects to the page's DevTools target; panics past `within`.
    pub fn launch(url: &str, profile: &Path, within: Duration) -> Self {
        // Its output is not read (it writes much): not piped, so it can never block on it.
        let browser = Browser(
            Command::new(CHROMIUM)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--mute-audio",
                    "--autoplay-policy=no-user-gesture-required",
                    "--remote-debugging-port=0",
                ])
                .arg(format!("--user-data-dir={}", profile.display()))
                .arg(url)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromium runs (Debian package chromium; scripts/test.sh installs it)"),
        );
        let deadline = Instant::now() + within;
        // Chromium writes the port it listens on as the first line of this file.
        let port_file = profile.join("DevToolsActivePort");
        let port: u16 = loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|text| text.lines().next()?.trim().parse().ok())
            {
                break port;
            }
            assert!(Instant::now() < deadline, "chromium gave no DevTools port");
            std::thread::sleep(Duration::from_millis(50));
        };
        let path = loop {
            if let Some(path) = page_target(port) {
                break path;
            }
            assert!(Instant::now() < deadline, "chromium shows no page target");
            std::thread::sleep(Duration::from_millis(100));
        };
        let socket = websocket(port, &path);
        Self {
            _browser: browser,
            socket,
            next_id: 0,
        }
    }

    /// Evaluates `expression` in the page; the `result` object of the reply, as JSON text
    /// (e.g. `{"type":"string","value":"..."}`).
    pub fn evaluate(&mut self, expression: &str) -> String {
        self.next_id += 1;
        let id = self.next_id;
        let message = format!(
            r#"{{"id":{id},"method":"Runtime.evaluate","params":{{"expression":{},"returnByValue":true}}}}"#,
            json_string(expression)
        );
        send_text(&mut self.socket, message.as_bytes());
        let wanted = format!(r#"{{"id":{id},"#);
        loop {
            let reply = read_text(&mut self.socket);
            if reply.starts_with(&wanted) {
                return reply;
            }
        }
    }
}

/// The browser process, killed when dropped (also when a launch fails half-way).
struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The WebSocket path of the first page target, from `GET /json/list` (Chromium answers
/// only HTTP/1.1, and keeps the connection open: the body is read by its length).
fn page_target(port: u16) -> Option<String> {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).ok()?;
    socket.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    socket
        .write_all(b"GET /json/list HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut reader = BufReader::new(socket);
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    let body = String::from_utf8(body).ok()?;
    // Targets are objects with "type" and "webSocketDebuggerUrl": the first page's.
    let page = body.find(r#""type": "page""#)?;
    let start = body[page..].find("ws://")? + page;
    let url = &body[start..start + body[start..].find('"')?];
    let path = &url[url.find("/devtools/")?..];
    Some(path.to_string())
}

/// Opens a WebSocket to `path` on the DevTools port.
fn websocket(port: u16, path: &str) -> TcpStream {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).expect("connect to DevTools");
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: c2lwcnRtcC10ZXN0LWtleQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(socket.try_clone().unwrap());
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(
        status.starts_with("HTTP/1.1 101"),
        "DevTools upgrade: {status}"
    );
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    assert!(
        reader.buffer().is_empty(),
        "nothing is sent before the first command"
    );
    socket
}

/// Sends one masked text frame (a client must mask what it sends).
fn send_text(socket: &mut TcpStream, payload: &[u8]) {
    let mask = [0x5a, 0x17, 0xc3, 0x08];
    let mut frame = vec![0x81];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n < 65536 => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    socket.write_all(&frame).expect("send to DevTools");
}

/// Reads frames until a whole text message (the browser does not mask; control frames are
/// skipped, fragments joined).
fn read_text(socket: &mut TcpStream) -> String {
    let mut message = Vec::new();
    loop {
        let mut head = [0u8; 2];
        socket.read_exact(&mut head).expect("read from DevTools");
        let len = match head[1] & 0x7f {
            126 => {
                let mut n = [0u8; 2];
                socket.read_exact(&mut n).unwrap();
                u64::from(u16::from_be_bytes(n))
            }
            127 => {
                let mut n = [0u8; 8];
                socket.read_exact(&mut n).unwrap();
                u64::from_be_bytes(n)
            }
            n => u64::from(n),
        };
        let mut payload = vec![0u8; len as usize];
        socket.read_exact(&mut payload).unwrap();
        let opcode = head[0] & 0x0f;
        if opcode >= 0x8 {
            continue; // ping, pong, close: not a message
        }
        message.extend_from_slice(&payload);
        if head[0] & 0x80 != 0 {
            return String::from_utf8(message).expect("DevTools speaks UTF-8");
        }
    }
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
