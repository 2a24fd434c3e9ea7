//! The status page in a real headless Chromium, against the real gateway:
//! `seed-gateway demo` with simulated devices behind its emulated packet
//! forwarder, publishing to a real Mosquitto.
//!
//! What a technician sees on a phone: the gateway's id and its devices;
//! a device heard for the first time appears without reloading; the
//! Internet going down shows as such; the admin pages let the right
//! password in and keep a wrong one out. A screenshot of the phone view is
//! left in `tests/artifacts/status-page.png`.
//!
//! Each test starts its own gateway and browser; they run one at a time
//! (a Chromium per test is heavy on a small CI machine).

use std::path::Path;
use std::time::Duration;

use radio_bridge::frame::{
    Capabilities, DeviceClass, Envelope, Frame, Heartbeat, Message, PowerState, ProtocolVersion,
};
use radio_bridge::gwmp::Eui;
use radio_bridge::identity::Identity;
use radio_bridge::simulator::packet_forwarder::{PacketForwarder, PacketForwarderConfig};
use seed_e2e::artifacts_dir;
use seed_e2e::browser::{unavailable, Browser, PHONE_HEIGHT, PHONE_WIDTH};
use seed_e2e::demo::{DemoOptions, DemoProcess};
use seed_e2e::gateway::{run_cli, GatewayProcess, TestConfig};
use seed_e2e::mosquitto::{Mosquitto, MosquittoOptions};
use seed_e2e::rauc::{make_bundle, ota_section, pretend_system, small_rootfs, TestKeys};
use serde_json::json;
use tokio::sync::Mutex;

/// One browser test at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

const ADMIN_PASSWORD: &str = "kiosk keeper 2024";

/// `None` (with the reason printed) when Chromium or its driver is missing.
fn browser_available() -> bool {
    match unavailable() {
        Some(why) => {
            eprintln!("SKIPPED: browser tests need Chromium: {why}");
            false
        }
        None => true,
    }
}

/// A demo gateway with 4 simulated devices at 20× speed, publishing to `broker`.
async fn demo(dir: &Path, broker: &Mosquitto) -> DemoProcess {
    let mut options = DemoOptions::new(dir);
    options.devices = 4;
    options.speed = 20.0;
    options.mqtt_url = Some(broker.url());
    DemoProcess::start(&options).await
}

/// The number of (not gone) device rows in the neighbors table.
const DEVICE_ROWS: &str =
    "document.querySelectorAll('#neighbors tbody tr[data-device-id]:not([hidden])').length";

/// Opens the status page and waits until it is live and filled in.
async fn open_status_page(browser: &Browser, gateway: &DemoProcess) {
    browser.goto(&gateway.url("/")).await;
    browser
        .wait_until(
            "the live badge",
            "return document.getElementById('live').getAttribute('data-state') === 'live';",
        )
        .await;
    browser
        .wait_until(
            "the gateway id",
            "return document.getElementById('gateway-id').textContent.length === 64;",
        )
        .await;
}

/// A heartbeat from a device the gateway has never heard, signed with its
/// own fresh key, exactly as the radio would carry it.
fn heartbeat_from_new_device(identity: &Identity) -> Vec<u8> {
    let envelope = Envelope {
        version: ProtocolVersion::CURRENT,
        device_id: identity.device_id(),
        to: None,
        seq: None,
        message: Message::Heartbeat(Heartbeat {
            device_class: DeviceClass::Handheld,
            timestamp_counter: 1,
            power_state: PowerState::Charging,
            ledger_height: 4242,
            sync_capable: true,
            capabilities: Capabilities {
                supports_groups: true,
                supports_trust_scores: true,
                supports_ai_assistant: false,
                unknown_bits: 0,
            },
        }),
    };
    Frame::sign(envelope, identity.signing_key())
        .expect("a fresh identity signs")
        .bytes
}

#[tokio::test]
async fn status_page_shows_the_live_gateway_and_its_devices() {
    if !browser_available() {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(MosquittoOptions::new()).await;
    let gateway = demo(dir.path(), &broker).await;
    let browser = Browser::start().await;
    open_status_page(&browser, &gateway).await;

    assert_eq!(
        browser.text("#gateway-id").await.as_deref(),
        Some(gateway.gateway_id.as_str()),
        "the page names the gateway the demo started"
    );
    browser
        .wait_until(
            "all 4 simulated devices",
            &format!("return {DEVICE_ROWS} >= 4;"),
        )
        .await;
    let ids = browser
        .js("return Array.from(document.querySelectorAll('#neighbors tbody tr[data-device-id]')).map(r => [r.getAttribute('data-device-id'), r.getAttribute('data-liveness')]);")
        .await;
    let rows = ids.as_array().expect("a list of rows");
    assert_eq!(rows.len(), 4, "one row per simulated device: {ids}");
    for row in rows {
        let id = row[0].as_str().unwrap();
        assert_eq!(id.len(), 64, "device ids are 32-byte hex: {id}");
        assert_eq!(row[1], "active", "a device heard just now is active: {ids}");
    }
    browser
        .wait_until(
            "the device count",
            "return /\\b4\\b/.test(document.getElementById('neighbors-summary').textContent);",
        )
        .await;

    // The whole picture of a healthy gateway: Internet connected, the
    // simulated concentrator up, frames counted, nothing to worry about.
    browser
        .wait_until(
            "the uplink connected",
            "return document.getElementById('uplink-summary').textContent.indexOf('Internet: connected') === 0;",
        )
        .await;
    assert_eq!(
        browser
            .attribute("#links li", "data-state")
            .await
            .as_deref(),
        Some("up"),
        "the simulated concentrator's link is up"
    );
    browser
        .wait_until(
            "frames counted",
            "return /[1-9]/.test(document.getElementById('frames-summary').textContent);",
        )
        .await;
    browser
        .wait_until(
            "the verdict that everything works",
            "return document.getElementById('verdict').getAttribute('data-level') === 'ok';",
        )
        .await;
    browser
        .wait_until(
            "the start-up event",
            "return document.querySelector('#events li[data-kind=\"started\"]') !== null;",
        )
        .await;
    browser
        .wait_until(
            "this hour's traffic in the chart",
            "var bars = document.querySelectorAll('#traffic-svg rect.bar'); return bars.length === 24 && Number(bars[23].getAttribute('data-count')) > 0;",
        )
        .await;
    browser
        .wait_until(
            "the airtime of the band the gateway answers in",
            "var b = document.querySelectorAll('#duty-cycle li[id^=\"band-\"]'); return b.length >= 1 && /^Airtime \\d{3}\\.\\d+–\\d{3}\\.\\d+ MHz: /.test(b[0].textContent);",
        )
        .await;
    browser
        .wait_until(
            "the storage line",
            "return document.getElementById('storage-summary').textContent.length > 0;",
        )
        .await;
    assert!(
        browser
            .attribute("#connection-lost", "hidden")
            .await
            .is_some(),
        "no 'connection lost' notice while the page is live"
    );

    // The phone view, for people to look at (and docs/status-page.png).
    let shot = browser
        .screenshot(&artifacts_dir().join("status-page.png"))
        .await;
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG file");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!(
        (width, height),
        (PHONE_WIDTH, PHONE_HEIGHT),
        "the screenshot is the phone viewport"
    );
    // And the rest of the page, one phone screen at a time, to review
    // what is below the fold.
    let page_height = browser
        .js("return document.documentElement.scrollHeight;")
        .await
        .as_u64()
        .expect("a page height");
    let screens = page_height.div_ceil(u64::from(PHONE_HEIGHT));
    for screen in 1..screens {
        browser
            .js(&format!(
                "window.scrollTo(0, {}); return true;",
                screen * u64::from(PHONE_HEIGHT)
            ))
            .await;
        browser
            .screenshot(&artifacts_dir().join(format!("status-page-{}.png", screen + 1)))
            .await;
    }
    browser.quit().await;
}

#[tokio::test]
async fn a_new_device_appears_without_reloading() {
    if !browser_available() {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(MosquittoOptions::new()).await;
    let gateway = demo(dir.path(), &broker).await;
    let browser = Browser::start().await;
    open_status_page(&browser, &gateway).await;
    browser
        .wait_until(
            "the simulated devices",
            &format!("return {DEVICE_ROWS} >= 4;"),
        )
        .await;
    browser.js("window.__notReloaded = 1; return true;").await;

    // A device nobody simulated, heard through a second packet forwarder.
    let newcomer = Identity::generate();
    let device_id = newcomer.id_hex();
    let forwarder = PacketForwarder::start(PacketForwarderConfig::new(
        gateway.gwmp,
        Eui([0x5e, 0xed, 0, 0, 0, 0, 0, 0x42]),
    ))
    .await
    .expect("second packet forwarder");
    let token = forwarder
        .inject(&heartbeat_from_new_device(&newcomer), -97.0, 6.5)
        .await
        .expect("heartbeat sent");
    tokio::time::timeout(Duration::from_secs(10), forwarder.wait_push_ack(token))
        .await
        .expect("the gateway acknowledged the packet forwarder's PUSH_DATA");

    let row = format!("#neighbors tbody tr[data-device-id={}]", json!(device_id));
    browser
        .wait_until(
            "the new device's row",
            &format!("return document.querySelector({}) !== null;", json!(row)),
        )
        .await;
    assert_eq!(
        browser.js("return window.__notReloaded === 1;").await,
        json!(true),
        "the row came in over the live connection, not by reloading the page"
    );
    assert_eq!(
        browser.attribute(&row, "data-liveness").await.as_deref(),
        Some("active")
    );
    let cells = browser
        .js(&format!(
            "return Array.from(document.querySelector({}).cells).map(c => c.textContent);",
            json!(row)
        ))
        .await;
    let cells: Vec<&str> = cells
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        cells[0].starts_with(&device_id[..6]) && cells[0].contains("handheld"),
        "short id and class: {cells:?}"
    );
    assert_eq!(cells[1], "Charging", "{cells:?}");
    assert!(
        cells[2].contains("\u{2212}97 dBm"),
        "signal as heard: {cells:?}"
    );
    assert!(cells[3].starts_with("4,242"), "ledger height: {cells:?}");
    browser.quit().await;
}

#[tokio::test]
async fn the_page_shows_the_internet_going_down() {
    if !browser_available() {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(MosquittoOptions::new()).await;
    let gateway = demo(dir.path(), &broker).await;
    let browser = Browser::start().await;
    open_status_page(&browser, &gateway).await;
    browser
        .wait_until(
            "the uplink connected",
            "return document.getElementById('uplink-summary').textContent.indexOf('Internet: connected') === 0;",
        )
        .await;
    browser.js("window.__notReloaded = 1; return true;").await;

    broker.stop().await;

    let summary = browser
        .wait_until(
            "the uplink offline",
            "var t = document.getElementById('uplink-summary').textContent; return /^Internet: (offline|not connected)/.test(t) ? t : null;",
        )
        .await;
    assert!(
        summary.as_str().unwrap().contains("nothing lost"),
        "the keeper is told nothing is lost: {summary}"
    );
    browser
        .wait_until(
            "a verdict that asks for attention",
            "return document.getElementById('verdict').getAttribute('data-level') === 'warn';",
        )
        .await;
    let verdict = browser.text("#verdict-text").await.unwrap();
    assert!(
        verdict.contains("Internet"),
        "the verdict names the problem: {verdict}"
    );
    browser
        .wait_until(
            "the 'uplink lost' event",
            "return document.querySelector('#events li[data-kind=\"broker_down\"][data-level=\"warning\"]') !== null;",
        )
        .await;
    assert_eq!(
        browser.attribute("#live", "data-state").await.as_deref(),
        Some("live"),
        "the page is still connected to the gateway: only the Internet is down"
    );
    assert_eq!(
        browser.js("return window.__notReloaded === 1;").await,
        json!(true),
        "updated live, not by reloading"
    );

    // And back: the broker returns, the page says so by itself.
    broker.restart().await;
    browser
        .wait_until(
            "the uplink connected again",
            "return document.getElementById('uplink-summary').textContent.indexOf('Internet: connected') === 0;",
        )
        .await;
    browser
        .wait_until(
            "the verdict back to ok",
            "return document.getElementById('verdict').getAttribute('data-level') === 'ok';",
        )
        .await;
    browser.quit().await;
}

#[tokio::test]
async fn admin_login_takes_the_password_and_refuses_a_wrong_one() {
    if !browser_available() {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("gateway");

    // Set before the gateway starts, as a technician preparing the SD card would.
    let (ok, stdout, stderr) = run_cli(
        &[
            "set-admin-password",
            "--data-dir",
            data_dir.to_str().unwrap(),
        ],
        Some(format!("{ADMIN_PASSWORD}\n").as_bytes()),
    );
    assert!(ok, "set-admin-password failed: {stderr}");
    assert!(stdout.contains("admin.hash"), "it says where: {stdout}");

    let broker = Mosquitto::start(MosquittoOptions::new()).await;
    let gateway = demo(&data_dir, &broker).await;
    let browser = Browser::start().await;

    // /admin sends a visitor without a session to the login form.
    browser.goto(&gateway.url("/admin")).await;
    browser
        .wait_until(
            "the login form",
            "return document.getElementById('login-form') !== null;",
        )
        .await;
    assert!(browser
        .client()
        .current_url()
        .await
        .unwrap()
        .path()
        .ends_with("/admin/login"));

    // A wrong password: refused with 401 and a visible reason.
    log_in(&browser, "not the password").await;
    browser
        .wait_until(
            "the wrong-password message",
            "var e = document.getElementById('login-error'); return e !== null && e.offsetParent !== null;",
        )
        .await;
    assert_eq!(
        browser.text("#login-error").await.as_deref(),
        Some("Wrong password.")
    );
    assert_eq!(
        browser
            .js("return performance.getEntriesByType('navigation')[0].responseStatus;")
            .await,
        json!(401),
        "a refused login is a 401 page"
    );
    assert!(
        browser
            .js("return document.getElementById('flush-uplink');")
            .await
            .is_null(),
        "no admin actions without the password"
    );

    // The right one: the actions, for this gateway.
    log_in(&browser, ADMIN_PASSWORD).await;
    browser
        .wait_until(
            "the admin actions",
            "return document.getElementById('flush-uplink') !== null && document.getElementById('logout-form') !== null;",
        )
        .await;
    assert!(browser
        .client()
        .current_url()
        .await
        .unwrap()
        .path()
        .ends_with("/admin"));
    assert_eq!(
        browser.text("#admin-gateway-id").await.as_deref(),
        Some(gateway.gateway_id.as_str())
    );
    assert!(
        browser
            .js("return document.getElementById('download-diagnostics');")
            .await
            .is_object(),
        "the diagnostics download is offered"
    );

    // An action goes through (CSRF token and session cookie work in a real browser).
    browser
        .js("document.querySelector('#flush-uplink button, #flush-uplink [type=submit]').click(); return true;")
        .await;
    browser
        .wait_until(
            "the action's outcome",
            "var m = document.getElementById('admin-message'); return m ? m.textContent : null;",
        )
        .await;
    assert_eq!(
        browser.text("#admin-message").await.as_deref(),
        Some("Sending waiting messages now.")
    );

    // Logging out ends the session: /admin asks for the password again.
    browser
        .js("document.querySelector('#logout-form button, #logout-form [type=submit]').click(); return true;")
        .await;
    browser
        .wait_until(
            "the status page after logout",
            "return location.pathname === '/' && document.getElementById('verdict') !== null;",
        )
        .await;
    browser.goto(&gateway.url("/admin")).await;
    browser
        .wait_until(
            "the login form again",
            "return document.getElementById('login-form') !== null;",
        )
        .await;
    browser.quit().await;
}

/// Types `password` into the login form and submits it.
async fn log_in(browser: &Browser, password: &str) {
    let field = browser
        .client()
        .find(fantoccini::Locator::Css("#password"))
        .await
        .expect("password field");
    field.clear().await.expect("field cleared");
    field.send_keys(password).await.expect("password typed");
    browser
        .client()
        .find(fantoccini::Locator::Css("#login-submit"))
        .await
        .expect("login button")
        .click()
        .await
        .expect("login submitted");
}

#[tokio::test]
async fn the_admin_page_explains_how_to_switch_it_on() {
    if !browser_available() {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(MosquittoOptions::new()).await;
    let gateway = demo(dir.path(), &broker).await;
    let browser = Browser::start().await;
    browser.goto(&gateway.url("/admin")).await;
    browser
        .wait_until(
            "the switched-off notice",
            "return document.getElementById('admin-disabled') !== null;",
        )
        .await;
    let hint = browser.text("#admin-setup-hint").await.unwrap();
    assert!(
        hint.contains("seed-gateway set-admin-password --data-dir")
            && hint.contains(dir.path().to_str().unwrap()),
        "the hint names the command and this gateway's data dir: {hint}"
    );
    assert!(browser
        .js("return document.getElementById('login-form');")
        .await
        .is_null());
    browser.quit().await;
}

/// Uploads a file through the admin page's update form.
async fn upload_update(browser: &Browser, bundle: &Path) {
    let field = browser
        .client()
        .find(fantoccini::Locator::Css("#bundle"))
        .await
        .expect("bundle file field");
    field
        .send_keys(bundle.to_str().expect("UTF-8 path"))
        .await
        .expect("bundle chosen");
    browser
        .client()
        .find(fantoccini::Locator::Css(
            "#upload-update button[type=submit]",
        ))
        .await
        .expect("install button")
        .click()
        .await
        .expect("upload submitted");
}

#[tokio::test]
async fn an_update_uploaded_on_the_admin_page_is_checked_and_its_outcome_shown() {
    if !browser_available() {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let keys = TestKeys::generate(&dir.path().join("trusted"));
    let stranger = TestKeys::generate(&dir.path().join("stranger"));
    let (system_conf, release) = pretend_system(dir.path(), "seed-gateway-test", "1.0.0");
    let rootfs = small_rootfs(&dir.path().join("rootfs.ext4"), "2.0.0");
    let foreign = dir.path().join("foreign.raucb");
    make_bundle(
        &stranger,
        "seed-gateway-test",
        "2.0.0",
        Some(&rootfs),
        &foreign,
    );
    let good = dir.path().join("good.raucb");
    make_bundle(&keys, "seed-gateway-test", "2.0.0", Some(&rootfs), &good);

    let mut config = TestConfig::new(dir.path());
    config.extra = ota_section(&system_conf, &release, &keys.ca_cert);
    let data_dir = config.data_dir.join("data");
    let (ok, _, stderr) = run_cli(
        &[
            "set-admin-password",
            "--data-dir",
            data_dir.to_str().unwrap(),
        ],
        Some(format!("{ADMIN_PASSWORD}\n").as_bytes()),
    );
    assert!(ok, "set-admin-password failed: {stderr}");
    let gateway = GatewayProcess::start(&config).await;
    let url = |path: &str| format!("http://{}{path}", gateway.config.http);
    let browser = Browser::start().await;
    browser.goto(&url("/admin")).await;
    log_in(&browser, ADMIN_PASSWORD).await;
    browser
        .wait_until(
            "the update form",
            "return document.getElementById('upload-update') !== null;",
        )
        .await;

    // Signed by a CA this gateway does not trust: refused, with RAUC's reason.
    upload_update(&browser, &foreign).await;
    browser
        .wait_until(
            "the refusal",
            "var m = document.getElementById('admin-message'); return m !== null && m.textContent.indexOf('RAUC does not accept the bundle') >= 0;",
        )
        .await;

    // A good one starts; this host cannot install (no RAUC service), and
    // the status page says so in words.
    upload_update(&browser, &good).await;
    browser
        .wait_until(
            "the update started",
            "var m = document.getElementById('admin-message'); return m !== null && m.textContent.indexOf('Update to version 2.0.0 started') >= 0;",
        )
        .await;
    browser.goto(&url("/")).await;
    let shown = browser
        .wait_until(
            "the update's outcome on the status page",
            "var u = document.getElementById('update-summary'); return u !== null && !u.hidden && u.textContent.indexOf('Update 2.0.0 failed') >= 0 ? u.textContent : false;",
        )
        .await;
    assert!(
        shown
            .as_str()
            .is_some_and(|t| t.contains("installing failed")),
        "{shown}"
    );
    browser.quit().await;
}
