//! The deployment files of `deploy/` (see deploy/README.md) go through the binary's own
//! config loader (`--check-config`, which checks everything a start checks and exits), so a
//! change of the config vocabulary that breaks them fails here instead of on a server.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::{config_file, siprtmp, wait_exit};

fn deploy(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(name)
}

/// `siprtmp -c CONFIG --check-config`: its exit status, stdout and stderr.
fn check(config: &std::path::Path) -> (i32, String, String) {
    let child = siprtmp()
        .arg("-c")
        .arg(config)
        .arg("--check-config")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start siprtmp");
    let output = wait_exit(child, Duration::from_secs(20), "--check-config");
    (
        output.status.code().expect("an exit status"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn every_deploy_config_is_accepted_by_the_binary() {
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(deploy("")).expect("deploy/") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let (code, stdout, stderr) = check(&path);
            assert_eq!(code, 0, "{}: {stderr}", path.display());
            assert!(stdout.contains("configuration ok"), "{stdout}");
            checked.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    checked.sort();
    assert_eq!(
        checked,
        [
            "edge.toml",
            "gateway-a.toml",
            "gateway-b.toml",
            "origin.toml"
        ],
        "the files deploy/README.md describes"
    );
}

#[test]
fn the_check_refuses_what_a_start_would_refuse() {
    let text = std::fs::read_to_string(deploy("gateway-a.toml")).unwrap();
    let broken = text.replace("shutdown_grace_secs = 5", "shutdown_grace_secs = 600");
    assert_ne!(text, broken, "gateway-a.toml sets shutdown_grace_secs");
    let config = config_file("deploy_configs_broken", "gateway-a.toml", &broken);
    let (code, stdout, stderr) = check(&config);
    assert_ne!(code, 0);
    assert!(!stdout.contains("configuration ok"));
    assert!(stderr.contains("shutdown_grace_secs"), "{stderr}");
}
