//! Reading the node's HTTP listener as an operator's tools do: `curl` for a request, the value
//! of one sample of a Prometheus exposition (or of the node's own scrape), and `promtool check metrics` (Debian package
//! `prometheus`) on a scrape.

use std::io::Write;
use std::process::{Command, Stdio};

/// `curl -X method http://addr/path` (with `Authorization: Bearer token` if given): the status
/// code and the body.
pub fn curl(addr: &str, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut command = Command::new("curl");
    command.args(["-s", "-m", "10", "-X", method, "-w", "\n%{http_code}"]);
    if let Some(token) = token {
        command.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let output = command
        .arg(format!("http://{addr}{path}"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    let (body, status) = text.rsplit_once('\n').expect("a status line");
    (status.parse().expect("a status"), body.to_string())
}

/// The connections of `GET /api/v1/connections` on the HTTP listener `http`, each its object's
/// text from its `"id"` on (enough to look a connection up by its streams and read its
/// numbers with [`json_number`]).
pub fn connections(http: &str) -> Vec<String> {
    let (status, body) = curl(http, "GET", "/api/v1/connections", None);
    assert_eq!(status, 200, "{body}");
    body.split("{\"id\":").skip(1).map(str::to_string).collect()
}

/// The unsigned number at `key` in a JSON object's text (`None` for null or no such key).
pub fn json_number(object: &str, key: &str) -> Option<u64> {
    let at = object.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = object[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The value of the sample `name` (with its labels, as written) in an exposition.
pub fn sample(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let (key, value) = line.rsplit_once(' ')?;
        (key == name).then(|| value.parse().ok())?
    })
}

/// The value of the sample `name` (with its labels, as written) in the node's `/metrics` on
/// the HTTP listener `http`; panics when the scrape fails or has no such sample.
pub fn metric(http: &str, name: &str) -> f64 {
    let (status, body) = curl(http, "GET", "/metrics", None);
    assert_eq!(status, 200, "{body}");
    sample(&body, name).unwrap_or_else(|| panic!("no {name} in\n{body}"))
}

/// `promtool check metrics` on `exposition`: its complaints, if any.
pub fn promtool_check(exposition: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (Debian package prometheus; scripts/test.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(said)
    }
}
