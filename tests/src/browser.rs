//! Real headless Chromium for tests, driven over WebDriver.
//!
//! [`Browser::start`] runs Debian's `chromedriver` on a free loopback port,
//! waits until it reports ready, and opens a session with `fantoccini`: a
//! headless Chromium with a phone-sized window (390×844, an iPhone 12-14)
//! and a fresh profile, so no cache, cookie or service worker leaks from one
//! test into the next.
//!
//! Chromedriver speaks plain HTTP on loopback, so the WebDriver client uses
//! hyper's plain connector: no TLS stack is compiled for it.
//!
//! The page is inspected with small JavaScript expressions rather than
//! element handles: one round trip per check, and no stale-element races
//! while the live page re-renders a table under our feet.
//! [`Browser::wait_until`] polls such an expression until it holds, with a
//! bound and a failure message that shows what the page said last.
//!
//! Chromedriver runs in its own process group, and Chromium is its child:
//! dropping the [`Browser`] (also when a test panics) kills that group, so
//! no browser outlives its test.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::mosquitto::unused_port;

/// Where Debian's `chromium` package installs the browser.
pub const CHROMIUM_BIN: &str = "/usr/bin/chromium";
/// Where Debian's `chromium-driver` package installs the driver.
pub const CHROMEDRIVER_BIN: &str = "/usr/bin/chromedriver";

/// The phone the page is designed for, in CSS pixels.
pub const PHONE_WIDTH: u32 = 390;
pub const PHONE_HEIGHT: u32 = 844;

/// How long the driver and the browser may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`Browser::wait_until`] waits for the page by default.
pub const WAIT: Duration = Duration::from_secs(30);
/// How often a condition is checked while waiting.
const POLL: Duration = Duration::from_millis(100);

/// Why browser tests cannot run here, if they cannot: only a missing
/// browser or driver is a reason (`tests/run.sh` installs both).
pub fn unavailable() -> Option<String> {
    let missing: Vec<&str> = [CHROMIUM_BIN, CHROMEDRIVER_BIN]
        .into_iter()
        .filter(|bin| !Path::new(bin).exists())
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "{} not found: apt-get install -y chromium chromium-driver (tests/run.sh does)",
            missing.join(" and ")
        )
    })
}

/// A headless Chromium session and the chromedriver behind it.
pub struct Browser {
    client: Option<Client>,
    driver: Child,
    profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a fresh headless Chromium with a phone-sized
    /// window. Panics, with the driver's log, if either does not come up.
    pub async fn start() -> Browser {
        let profile = tempfile::Builder::new()
            .prefix("seed-chromium-")
            .tempdir()
            .expect("browser profile dir");
        let port = unused_port();
        let log = std::fs::File::create(profile.path().join("chromedriver.log"))
            .expect("chromedriver log file");
        let driver = Command::new(CHROMEDRIVER_BIN)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file handle"))
            .stderr(log)
            // Its own group, so Drop can take Chromium down with it.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{CHROMEDRIVER_BIN} does not start: {e}"));
        let mut browser = Browser {
            client: None,
            driver,
            profile,
        };
        let driver_addr = SocketAddr::from(([127, 0, 0, 1], port));
        browser.wait_driver_ready(driver_addr).await;

        let data_dir = browser.profile.path().join("profile");
        let capabilities: Capabilities = match json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM_BIN,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    format!("--window-size={PHONE_WIDTH},{PHONE_HEIGHT}"),
                    format!("--user-data-dir={}", data_dir.display()),
                ],
                // A desktop window cannot be narrower than 500 px; device
                // emulation gives the exact phone viewport, and makes Chromium
                // honour the page's `<meta name="viewport">` as a phone does.
                "mobileEmulation": {
                    "deviceMetrics": {
                        "width": PHONE_WIDTH,
                        "height": PHONE_HEIGHT,
                        "pixelRatio": 1.0,
                        "mobile": true,
                        "touch": true,
                    },
                },
            },
        }) {
            Value::Object(map) => map,
            _ => unreachable!("a JSON object literal"),
        };
        let client = tokio::time::timeout(
            START_TIMEOUT,
            ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities)
                .connect(&format!("http://{driver_addr}")),
        )
        .await;
        match client {
            Ok(Ok(client)) => browser.client = Some(client),
            Ok(Err(e)) => panic!(
                "Chromium did not start a session: {e}; chromedriver log:\n{}",
                browser.driver_log()
            ),
            Err(_) => panic!(
                "Chromium did not start within {START_TIMEOUT:?}; chromedriver log:\n{}",
                browser.driver_log()
            ),
        }
        browser
    }

    async fn wait_driver_ready(&mut self, addr: SocketAddr) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.driver.try_wait() {
                panic!(
                    "chromedriver exited at start ({status}); log:\n{}",
                    self.driver_log()
                );
            }
            // Chromedriver listens once it is ready for sessions. (Its
            // `/status` would say so too, but it keeps connections open, so
            // the harness's one-shot HTTP GET cannot read it.)
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver was not ready within {START_TIMEOUT:?}; log:\n{}",
                self.driver_log()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// The chromedriver log so far (it includes Chromium's start-up errors).
    pub fn driver_log(&self) -> String {
        std::fs::read_to_string(self.profile.path().join("chromedriver.log")).unwrap_or_default()
    }

    /// The WebDriver session, for what the helpers here do not cover.
    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("a session is open until quit")
    }

    /// Navigates and waits for the page's load event.
    pub async fn goto(&self, url: &str) {
        self.client()
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("navigating to {url}: {e}"));
    }

    /// Runs `script` (a function body: `return ...;`) in the page.
    pub async fn js(&self, script: &str) -> Value {
        self.client()
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until `script` returns something truthy (not null, false, 0 or
    /// ""), and returns it. Panics after [`WAIT`] with `what` and the last
    /// value the script returned.
    pub async fn wait_until(&self, what: &str, script: &str) -> Value {
        self.wait_until_for(what, script, WAIT).await
    }

    /// [`Browser::wait_until`] with its own bound.
    pub async fn wait_until_for(&self, what: &str, script: &str, bound: Duration) -> Value {
        let deadline = Instant::now() + bound;
        loop {
            // A script can fail while a form submission navigates away;
            // that is "not yet", not a failure.
            let last = match self.client().execute(script, Vec::new()).await {
                Ok(value) if truthy(&value) => return value,
                Ok(value) => value.to_string(),
                Err(e) => format!("an error: {e}"),
            };
            if Instant::now() >= deadline {
                let page = self
                    .client()
                    .execute(
                        "return document.body ? document.body.innerText : '';",
                        Vec::new(),
                    )
                    .await
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                panic!(
                    "the page did not show {what} within {bound:?}; the check returned {last}\n\
                     check: {script}\npage text:\n{page}"
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `textContent` of the first element matching `selector` (None if absent).
    pub async fn text(&self, selector: &str) -> Option<String> {
        let script = format!(
            "var e = document.querySelector({}); return e ? e.textContent : null;",
            json!(selector)
        );
        self.js(&script).await.as_str().map(str::to_string)
    }

    /// Attribute `name` of the first element matching `selector`.
    pub async fn attribute(&self, selector: &str, name: &str) -> Option<String> {
        let script = format!(
            "var e = document.querySelector({}); return e ? e.getAttribute({}) : null;",
            json!(selector),
            json!(name)
        );
        self.js(&script).await.as_str().map(str::to_string)
    }

    /// Saves a PNG of what the window shows, creating the directory.
    pub async fn screenshot(&self, path: &Path) -> PathBuf {
        let png = self
            .client()
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("screenshot failed: {e}"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("screenshot written");
        path.to_path_buf()
    }

    /// Ends the session (Chromium quits) and stops the driver.
    pub async fn quit(mut self) {
        if let Some(client) = self.client.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), client.close()).await;
        }
    }
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = self.driver.id() as i32;
        // SAFETY: kill(2) on the process group this Browser created.
        unsafe {
            libc_kill(-group, 9);
        }
        let _ = self.driver.wait();
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
