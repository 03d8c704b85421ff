//! The node's web page in a real browser: headless Chromium, driven over
//! WebDriver (chromedriver), against real `tidings run` processes.
//!
//! A specialist announced on one node appears on another node's page through
//! the watch stream, without a reload; clicking its record opens the
//! provenance (signer, signature check, spread); the members tab shows the
//! roster; values from the network are shown as text, never as markup; a node
//! with an API token asks the page for it, refuses a wrong one and works with
//! the right one.
//!
//! Skipped, with a message, when Chromium or chromedriver is not installed
//! (Debian: `apt-get install chromium chromium-driver`), unless
//! `TIDINGS_REQUIRE_BROWSER` is set, as CI does: then a missing browser fails.
//! With `TIDINGS_SCREENSHOTS=DIR` it saves the screenshots the README shows.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::cluster::{free_port, Cluster};
use serde_json::{json, Value};

const TOKEN: &str = "browser-test-token-5f2a";

/// The first of `names` that is an executable file, looked up in `PATH`.
fn find(variable: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(variable) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// A chromedriver process and one browser session; both end when dropped.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start(chromium: &Path, chromedriver: &Path) -> Self {
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let started = Instant::now();
        while http.get(format!("{base}/status")).send().is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not answer"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1200,720",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {answer}"))
            .to_string();
        Self {
            driver,
            base,
            session,
            http,
            _profile: profile,
        }
    }

    /// One WebDriver command; its `value`.
    fn command(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, url);
        if !body.is_null() {
            request = request.json(&body);
        }
        let answer: Value = request.send().unwrap().json().unwrap();
        let value = answer["value"].clone();
        assert!(
            value.get("error").is_none(),
            "webdriver {path}: {}",
            value["message"]
        );
        value
    }

    fn open(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", json!({ "url": url }));
    }

    /// Runs `script` (a function body) in the page; what it returns.
    fn eval(&self, script: &str) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
    }

    /// Waits until `script` returns something truthy; returns it.
    fn wait(&self, what: &str, script: &str) -> Value {
        let started = Instant::now();
        loop {
            let value = self.eval(script);
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::String(text) => !text.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return value;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "not within 20 s: {what}; the page shows: {}",
                self.eval("return document.querySelector('main').innerText")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The element `css` selects (its WebDriver reference).
    fn element(&self, css: &str) -> String {
        let found = self.command(
            reqwest::Method::POST,
            "/element",
            json!({ "using": "css selector", "value": css }),
        );
        found
            .as_object()
            .and_then(|object| object.values().next())
            .and_then(Value::as_str)
            .unwrap()
            .to_string()
    }

    /// A real click on `css`.
    fn click(&self, css: &str) {
        let element = self.element(css);
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            json!({}),
        );
    }

    /// Types `text` into `css` (after clearing it).
    fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css);
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/clear"),
            json!({}),
        );
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            json!({ "text": text }),
        );
    }

    /// Saves a screenshot as `DIR/name.png` when `TIDINGS_SCREENSHOTS=DIR`.
    fn screenshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("TIDINGS_SCREENSHOTS") else {
            return;
        };
        let encoded = self.command(reqwest::Method::GET, "/screenshot", Value::Null);
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap())
            .unwrap();
        std::fs::write(Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Rows of the directory table, as `name origin-label` strings.
const ROWS: &str = "return [...document.querySelectorAll('#specialists tbody tr')]\
    .map(row => row.dataset.name + ' ' + row.cells[3].innerText)";

#[test]
fn the_page_shows_the_directory_live_and_a_records_provenance() {
    let (Some(chromium), Some(chromedriver)) = (
        find(
            "CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
        ),
        find("CHROMEDRIVER", &["chromedriver"]),
    ) else {
        assert!(
            std::env::var_os("TIDINGS_REQUIRE_BROWSER").is_none(),
            "TIDINGS_REQUIRE_BROWSER is set but Chromium or chromedriver is not installed"
        );
        eprintln!(
            "skipped: the browser test needs Chromium and chromedriver \
             (Debian: apt-get install chromium chromium-driver)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::init(dir.path(), 3, 1000, &[]);
    // n2's API asks for a token.
    let config = cluster.members[2].dir.join("tidings.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "# api_token_file = \"api.token\"",
        &format!("api_token = \"{TOKEN}\"\n#"),
    );
    std::fs::write(&config, text).unwrap();
    cluster.start_all();
    cluster.wait_ready(0, Duration::from_secs(20));
    cluster.wait_ready(1, Duration::from_secs(20));

    let browser = Browser::start(&chromium, &chromedriver);
    browser.open(&format!("{}/", cluster.members[1].api));
    browser.wait(
        "the page follows the watch stream",
        "return document.querySelector('#live-state').innerText === 'live'",
    );
    browser.wait(
        "the page names its node",
        "return document.querySelector('#node-name').innerText.startsWith('n1')",
    );

    // Announced on n0: appears on n1's page through the watch stream. Its
    // metadata carries markup, which must show as text.
    let http = reqwest::blocking::Client::new();
    let created: Value = http
        .post(format!("{}/v1/specialists", cluster.members[0].api))
        .json(&json!({
            "name": "ocr-browser",
            "capabilities": ["ocr", "pdf"],
            "endpoint": "https://n0.example/ocr",
            "meta": {"note": "<img src=x onerror=alert(1)><b>bold</b>"},
        }))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let record = created["record"].as_str().unwrap().to_string();
    let rows = browser.wait(
        "the announced specialist appears on another node's page",
        &format!("const rows = (() => {{ {ROWS} }})(); return rows.some(r => r.startsWith('ocr-browser n0')) && rows"),
    );
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    let note = browser.eval(
        "const row = document.querySelector('#specialists tbody tr');\
         return [row.cells[0].innerText, row.querySelectorAll('img, b').length]",
    );
    assert_eq!(note[1], 0, "markup from the network was rendered: {note}");
    assert!(note[0].as_str().unwrap().contains("<b>bold</b>"), "{note}");
    // The events tab logged it.
    let events = browser.eval("return document.querySelector('#event-list').innerText");
    assert!(
        events
            .as_str()
            .unwrap()
            .contains("added ocr-browser [ocr,pdf] from n0"),
        "{events}"
    );
    // Filters: by capability and by name, on the page.
    browser.type_into("#filter-capability", "nomatch");
    browser.wait(
        "a capability filter that matches nothing empties the table",
        "return document.querySelectorAll('#specialists tbody tr').length === 0",
    );
    browser.type_into("#filter-capability", "pdf");
    browser.type_into("#filter-name", "ocr");
    browser.wait(
        "filters by capability and name find it",
        "return document.querySelectorAll('#specialists tbody tr').length === 1",
    );
    browser.screenshot("directory");

    // Its record link opens the provenance.
    browser.click("#specialists tbody tr a[href^='#/record/']");
    let signer = browser.wait(
        "the provenance names the signer",
        "const s = document.querySelector('#provenance-signer'); return s && s.innerText",
    );
    let signer = signer.as_str().unwrap();
    assert!(
        signer.contains("n0") && signer.contains("verify_strict"),
        "{signer}"
    );
    assert!(
        signer.contains(&cluster.members[0].id.to_string()),
        "{signer}"
    );
    let shown = browser.eval("return document.querySelector('#provenance-record').innerText");
    assert_eq!(shown, record.as_str());
    let tree = browser.eval("return document.querySelector('#provenance-tree').innerText");
    let tree = tree.as_str().unwrap();
    assert!(
        tree.contains("signed by n0") && tree.contains("this node got it"),
        "{tree}"
    );
    let history = browser.eval("return document.querySelector('#provenance-history').innerText");
    assert!(history.as_str().unwrap().contains("accepted"), "{history}");
    browser.screenshot("provenance");

    // Members: the roster with each member's state.
    browser.click("#tab-members");
    let members = browser.wait(
        "the members tab lists the roster",
        "const rows = [...document.querySelectorAll('#member-table tbody tr')].map(r => r.innerText);\
         return rows.length === 3 && rows",
    );
    let members: Vec<&str> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row.as_str().unwrap())
        .collect();
    let row = |label: &str| {
        *members
            .iter()
            .find(|row| row.starts_with(label))
            .unwrap_or_else(|| panic!("no row for {label}: {members:?}"))
    };
    assert!(row("n1").contains("this node"), "{members:?}");
    assert!(row("n0").contains("connected"), "{members:?}");
    let summary = browser.eval("return document.querySelector('#roster-summary').innerText");
    assert!(
        summary
            .as_str()
            .unwrap()
            .contains("roster epoch 0 · 3 members"),
        "{summary}"
    );
    browser.screenshot("members");

    // A node with a token: the page asks for it.
    browser.open(&format!("{}/", cluster.members[2].api));
    browser.wait(
        "the page asks for the token",
        "return !document.querySelector('#token-form').hidden",
    );
    assert_eq!(
        browser.eval("return document.querySelectorAll('#specialists tbody tr').length"),
        0
    );
    browser.type_into("#token", "wrong");
    browser.click("#token-form button");
    browser.wait(
        "a wrong token is refused",
        "return document.querySelector('#token-error').innerText.includes('refused')",
    );
    browser.type_into("#token", TOKEN);
    browser.click("#token-form button");
    browser.wait(
        "with the token, the directory loads",
        &format!("const rows = (() => {{ {ROWS} }})(); return rows.some(r => r.startsWith('ocr-browser n0'))"),
    );
    browser.wait(
        "with the token, the watch stream follows",
        "return document.querySelector('#live-state').innerText === 'live'",
    );
    assert!(browser
        .eval("return document.querySelector('#token-form').hidden")
        .as_bool()
        .unwrap());
}
