//! The commands that talk to a running node (`announce`, `lookup`, `members`,
//! `show`, `withdraw`, `watch`), against a real `tidings run` process.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn tidings(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(args)
        .current_dir(dir)
        .env_remove("TIDINGS_API")
        .env_remove("TIDINGS_CONFIG")
        .output()
        .unwrap()
}

fn json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

struct Stop(Child);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.0.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free UDP port (for QUIC) and a free TCP port (for the API) on loopback.
fn free_ports() -> (u16, u16) {
    (common::cluster::free_port(), common::cluster::free_port())
}

/// Runs `tidings run --config CONFIG` in `dir`; stopped when dropped.
fn run(dir: &Path, config: &str) -> Stop {
    let child = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["run", "--config", config])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Stop(child)
}

/// Waits until `tidings members` answers through the node's API.
fn wait_for_api(dir: &Path, config: &str) {
    let started = Instant::now();
    while !tidings(dir, &["members", "--config", config])
        .status
        .success()
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the node's API did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn commands_against_a_running_node() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let (udp, api) = free_ports();
    let init = tidings(
        path,
        &[
            "init",
            "solo",
            "--listen",
            &format!("127.0.0.1:{udp}"),
            "--api",
            &format!("127.0.0.1:{api}"),
        ],
    );
    assert!(init.status.success());
    let config = "solo/tidings.toml";
    // Before the node runs: a clear message.
    let absent = tidings(path, &["lookup", "--config", config]);
    assert_eq!(absent.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&absent.stderr).contains("no node is answering"));

    let _stop = run(path, config);
    wait_for_api(path, config);
    // `tidings watch` prints the changes that follow (here: the two below).
    let mut watch = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["watch", "--config", config, "--count", "2"])
        .current_dir(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(watch.stderr.take().unwrap()),
        &mut banner,
    )
    .unwrap();
    assert!(banner.starts_with("watching http://127.0.0.1"), "{banner}");
    let watch_pid = watch.id();
    let guard = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(30));
        let _ = Command::new("kill").arg(watch_pid.to_string()).status();
    });
    let announced = json(&tidings(
        path,
        &[
            "announce",
            "--config",
            config,
            "--name",
            "ocr",
            "--capability",
            "ocr",
            "--endpoint",
            "https://ocr.example/api",
            "--meta",
            "lang=en",
            "--json",
        ],
    ));
    let record = announced["record"].as_str().unwrap().to_string();
    let found = json(&tidings(
        path,
        &[
            "lookup",
            "--config",
            config,
            "--capability",
            "ocr",
            "--json",
        ],
    ));
    assert_eq!(found["specialists"][0]["specialist"]["meta"]["lang"], "en");
    let members = json(&tidings(path, &["members", "--config", config, "--json"]));
    assert_eq!(members["members"][0]["this_node"], true);
    let shown = json(&tidings(
        path,
        &["show", "--config", config, &record, "--json"],
    ));
    assert_eq!(shown["current"], true);
    let text =
        String::from_utf8(tidings(path, &["show", "--config", config, &record]).stdout).unwrap();
    assert!(text.contains("published here"), "{text}");
    assert!(
        json(&tidings(
            path,
            &["withdraw", "--config", config, "--name", "ocr", "--json"]
        ))["seq"]
            .as_u64()
            .unwrap()
            >= 3
    );
    let watched = watch.wait_with_output().unwrap();
    assert!(watched.status.success(), "watch stopped after its 2 events");
    let watched = String::from_utf8(watched.stdout).unwrap();
    let lines: Vec<&str> = watched.lines().collect();
    assert_eq!(lines.len(), 2, "{watched}");
    assert!(
        lines[0].contains("added")
            && lines[0].contains("ocr [ocr] https://ocr.example/api from solo"),
        "{watched}"
    );
    assert!(
        lines[1].contains("removed") && lines[1].contains("ocr"),
        "{watched}"
    );
    drop(guard);
    let missing = tidings(path, &["withdraw", "--config", config, "--name", "ocr"]);
    assert_eq!(missing.status.code(), Some(2));
    let message = String::from_utf8_lossy(&missing.stderr);
    // The problem document's title and detail, not its JSON.
    assert!(
        message.contains("404 Not Found (unknown-specialist)") && !message.contains('{'),
        "{message}"
    );
    let bad = tidings(path, &["show", "--config", config, "nonsense"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn init_off_loopback_writes_a_token_the_clients_use() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let (udp, api) = free_ports();
    let init = tidings(
        path,
        &[
            "init",
            "open",
            "--listen",
            &format!("127.0.0.1:{udp}"),
            "--api",
            &format!("0.0.0.0:{api}"),
        ],
    );
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    assert!(String::from_utf8_lossy(&init.stderr).contains("off loopback"));
    let token_file = path.join("open/api.token");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let token = std::fs::read_to_string(&token_file).unwrap();
    let config = "open/tidings.toml";
    let _stop = run(path, config);
    // The clients read the token through the configuration.
    wait_for_api(path, config);
    // Without it: refused.
    assert!(health(api, None).starts_with("HTTP/1.1 401"));
    assert!(health(api, Some(token.trim())).starts_with("HTTP/1.1 200"));
}

/// The raw answer to `GET /v1/health` on the API at `port`.
fn health(port: u16, token: Option<&str>) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// The names `tidings lookup --json` lists, sorted.
fn names(dir: &Path, config: &str) -> Vec<String> {
    let found = json(&tidings(dir, &["lookup", "--config", config, "--json"]));
    let mut names: Vec<String> = found["specialists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["specialist"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn the_configuration_file_owns_its_specialists_and_sighup_applies_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let (udp, api) = free_ports();
    let listen = format!("127.0.0.1:{udp}");
    let api = format!("127.0.0.1:{api}");
    let init = tidings(path, &["init", "solo", "--listen", &listen, "--api", &api]);
    assert!(init.status.success());
    let config = "solo/tidings.toml";
    let block = |name: &str| {
        format!("\n[[specialist]]\nname = \"{name}\"\ncapabilities = [\"x\", \"b\"]\nendpoint = \"https://{name}.example\"\n")
    };
    let base = std::fs::read_to_string(path.join(config)).unwrap();
    std::fs::write(path.join(config), format!("{base}{}", block("from-file"))).unwrap();

    let mut node = run(path, config);
    wait_for_api(path, config);
    let announced = tidings(
        path,
        &[
            "announce",
            "--config",
            config,
            "--name",
            "from-api",
            "--endpoint",
            "https://api.example",
        ],
    );
    assert!(announced.status.success());
    // The API cannot withdraw or replace what the file owns.
    for args in [
        vec!["withdraw", "--config", config, "--name", "from-file"],
        vec![
            "announce",
            "--config",
            config,
            "--name",
            "from-file",
            "--endpoint",
            "https://other.example",
        ],
    ] {
        let refused = tidings(path, &args);
        assert_eq!(refused.status.code(), Some(2));
        let message = String::from_utf8_lossy(&refused.stderr);
        assert!(
            message.contains("409") && message.contains("configuration file"),
            "{message}"
        );
        assert_eq!(
            message.matches("error:").count(),
            1,
            "printed once: {message}"
        );
    }
    assert_eq!(names(path, config), ["from-api", "from-file"]);

    // Edit the file (the block renamed) and send SIGHUP: applied live, the
    // API's specialist kept.
    std::fs::write(path.join(config), format!("{base}{}", block("renamed"))).unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &node.0.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let started = Instant::now();
    while names(path, config) != ["from-api", "renamed"] {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "SIGHUP did not apply the file: {:?}",
            names(path, config)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A SIGHUP with the file unchanged (its capabilities unsorted, as written)
    // signs nothing new.
    let own_seq = || {
        let members = json(&tidings(path, &["members", "--config", config, "--json"]));
        members["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|member| member["this_node"] == true)
            .map(|member| member["seq"].as_u64().unwrap())
            .unwrap()
    };
    let before = own_seq();
    for _ in 0..2 {
        let hup = Command::new("kill")
            .args(["-HUP", &node.0.id().to_string()])
            .status()
            .unwrap();
        assert!(hup.success());
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(names(path, config), ["from-api", "renamed"]);
    assert_eq!(own_seq(), before, "an unchanged file published a record");
    // A restart keeps both; a block removed from the file is withdrawn.
    drop(node);
    std::fs::write(path.join(config), &base).unwrap();
    node = run(path, config);
    wait_for_api(path, config);
    assert_eq!(names(path, config), ["from-api"]);
    drop(node);
}

#[test]
fn a_readable_key_file_is_refused_in_one_message() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let (udp, api) = free_ports();
    let listen = format!("127.0.0.1:{udp}");
    let api = format!("127.0.0.1:{api}");
    assert!(
        tidings(path, &["init", "solo", "--listen", &listen, "--api", &api])
            .status
            .success()
    );
    let key = path.join("solo/node.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = tidings(path, &["run", "--config", "solo/tidings.toml"]);
    assert_eq!(refused.status.code(), Some(2));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("chmod 600"), "{message}");
    assert_eq!(
        message.matches("has mode 0644").count(),
        1,
        "printed once: {message}"
    );
}
