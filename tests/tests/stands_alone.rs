//! The repository stands alone: no file tracked by git (code, tests, scripts, docs, data)
//! refers to anything beside or above the checkout — the team's shared directory, its media
//! or sipp scenarios, design notes that are not in the repository, or an absolute path into
//! a machine's workspace or home. A plain clone must build, test and read on its own.
//!
//! The patterns are assembled from pieces, so this file is scanned like any other and cannot
//! trip over its own spelling of them.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// One reference out of the repository: the line (from 1) and what it points at.
#[derive(Debug, PartialEq)]
struct Finding {
    line: usize,
    what: String,
}

/// Text patterns that always point outside the repository.
fn outside_patterns() -> Vec<String> {
    let shared = ["sha", "red"].concat();
    vec![
        format!("../{shared}"),
        format!("{shared}/media"),
        format!("{shared}/sipp"),
    ]
}

/// Absolute directories of a workstation: a path starting with one of them is someone's
/// machine, not the repository.
fn machine_dirs() -> Vec<String> {
    ["work", "home", "Users"]
        .iter()
        .map(|d| format!("/{d}/"))
        .collect()
}

/// Documents the team keeps beside the repository; naming one is a reference out unless the
/// repository has a file of that name.
fn outside_documents() -> Vec<String> {
    ["DESIGN", "PEERS"]
        .iter()
        .map(|d| format!("{d}.md"))
        .collect()
}

/// Every reference out of the repository in `text`. `tracked_names` are the file names (last
/// path component) the repository has.
fn references_out(text: &str, tracked_names: &BTreeSet<String>) -> Vec<Finding> {
    let patterns = outside_patterns();
    let dirs = machine_dirs();
    let documents: Vec<String> = outside_documents()
        .into_iter()
        .filter(|d| !tracked_names.contains(d))
        .collect();
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut hit = |what: &str| {
            found.push(Finding {
                line: i + 1,
                what: what.to_owned(),
            })
        };
        for p in patterns.iter().chain(&documents) {
            if line.contains(p.as_str()) {
                hit(p);
            }
        }
        for d in &dirs {
            // Only where an absolute path begins: at the start of a line or after a space,
            // quote, `=`, bracket..., not inside a URL or a relative path.
            let starts_token = line.match_indices(d.as_str()).any(|(at, _)| {
                let before = line[..at].chars().next_back();
                !matches!(before, Some(c) if c.is_alphanumeric() || "/._-~:".contains(c))
            });
            if starts_token {
                hit(d);
            }
        }
    }
    found
}

/// The workspace root (this crate's parent).
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// Paths of the files git tracks, relative to the root.
fn tracked_files() -> Vec<String> {
    let out = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root())
        .output()
        .expect("run git ls-files (the check needs git and a git checkout)");
    assert!(
        out.status.success(),
        "git ls-files failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split('\0')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn no_tracked_file_refers_outside_the_repository() {
    let files = tracked_files();
    assert!(
        files.iter().any(|f| f == "Cargo.toml"),
        "git ls-files did not list the workspace manifest: {files:?}"
    );
    let names: BTreeSet<String> = files
        .iter()
        .map(|f| f.rsplit('/').next().unwrap().to_owned())
        .collect();
    let mut report = Vec::new();
    for file in &files {
        // A tracked file removed from the worktree is not part of what a clone holds.
        let Ok(bytes) = std::fs::read(root().join(file)) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        for f in references_out(&text, &names) {
            report.push(format!("{file}:{}: {}", f.line, f.what));
        }
    }
    assert!(
        report.is_empty(),
        "files refer outside the repository:\n{}",
        report.join("\n")
    );
}

/// Spellings of the references the scanner looks for, made from pieces (see the module
/// comment): the shared directory, the two documents, the two workstation directories.
fn pieces() -> (String, String, String, String, String) {
    (
        ["sha", "red"].concat(),
        ["DES", "IGN.md"].concat(),
        ["PEE", "RS.md"].concat(),
        ["/wo", "rk/"].concat(),
        ["/ho", "me/"].concat(),
    )
}

#[test]
fn the_scanner_finds_each_kind_of_reference() {
    let (shared, design, peers, work, home) = pieces();
    let text = format!(
        "clean line\n\
         see ../{shared}/notes for more\n\
         let m = root.join(\"{shared}/media\");\n\
         scenario in {shared}/sipp/uas.xml\n\
         the design: {design} and {peers}\n\
         CARGO_TARGET_DIR={work}target cargo build\n\
         \"{home}someone/clip.flv\"\n\
         {work}x at the start of a line\n"
    );
    let found: Vec<(usize, String)> = references_out(&text, &BTreeSet::new())
        .into_iter()
        .map(|f| (f.line, f.what))
        .collect();
    assert_eq!(
        found,
        vec![
            (2, format!("../{shared}")),
            (3, format!("{shared}/media")),
            (4, format!("{shared}/sipp")),
            (5, design),
            (5, peers),
            (6, work.clone()),
            (7, home),
            (8, work),
        ]
    );
}

#[test]
fn the_scanner_leaves_the_repository_s_own_references_alone() {
    let (shared, design, _, work, home) = pieces();
    // The repository has a document of that name: naming it is a reference inside.
    let names: BTreeSet<String> = [design.clone()].into();
    let text = format!(
        "design in {design}\n\
         results/gateway-{shared}/README.md, --{shared}-rtp-ports, a {shared} RTP port\n\
         https://example.org{work}page and src{work}mod.rs and ~{home}x\n\
         /usr/share/sip-tester/g711a.pcap, /tmp/before\n"
    );
    assert_eq!(references_out(&text, &names), vec![]);
}
