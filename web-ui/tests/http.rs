//! The web interface over real HTTP: a real server on 127.0.0.1, real sockets, and a fixed
//! gateway behind the `GatewayView` trait.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::client::{get, get_with, post_form, request, EventStream, Reply};
use common::fixture::{BROKER_SECRET, PASSWORD};
use common::{start, Fixture, Server};
use web_ui::{AdminAction, EventLevel, EventView, LinkState, LiveEvent};

// ---------------------------------------------------------------- read-only JSON API

#[tokio::test]
async fn status_json_has_the_documented_shape_and_keeper_sentences() {
    let server = start(Fixture::new()).await;
    let reply = get(server.addr, "/api/v1/status").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let doc = reply.json();

    assert!(doc["now_ms"].as_u64().unwrap() > 1_600_000_000_000);
    assert_eq!(doc["gateway"]["id"], "gw-3fa9c21d");
    assert_eq!(doc["gateway"]["version"], "0.1.0");
    assert!(doc["gateway"]["uptime_s"].is_u64());

    let uplink = &doc["uplink"];
    for field in [
        "configured",
        "connected",
        "broker",
        "since_ms",
        "last_publish_ms",
        "last_error",
        "backlog",
        "oldest_pending_ms",
        "published_total",
        "dropped_total",
        "publish_latency",
    ] {
        assert!(uplink.get(field).is_some(), "uplink.{field} missing");
    }
    assert_eq!(uplink["backlog"], 1204);
    assert_eq!(uplink["broker"], "mqtts://broker.example.org:8883");

    let link = &doc["links"][0];
    assert_eq!(link["name"], "rnode0");
    assert_eq!(link["state"], "up");
    for field in [
        "kind",
        "detail",
        "since_ms",
        "frames_received",
        "malformed",
        "bad_crc",
        "device_errors",
        "last_rssi",
        "last_snr",
        "last_frame_ms",
    ] {
        assert!(link.get(field).is_some(), "links[].{field} missing");
    }
    let band = &doc["duty_cycle"][1];
    assert_eq!(band["band"], "g3 869.4-869.65 MHz");
    assert!((band["percent"].as_f64().unwrap() - 25.277).abs() < 0.01);
    assert_eq!(doc["storage"]["quota_state"], "ok");
    assert_eq!(doc["storage"]["writable"], true);
    assert_eq!(doc["frames"]["accepted"], 52_611);
    assert_eq!(doc["mailboxes"]["pending"], 3);
    assert_eq!(doc["events"][0]["kind"], "broker_down");
    assert_eq!(doc["events"][0]["level"], "warning");
    assert_eq!(doc["traffic_24h"].as_array().unwrap().len(), 24);

    let summary = &doc["summary"];
    assert_eq!(
        summary["uplink"]["text"],
        "Internet: offline for 3 h, 1,204 messages waiting, nothing lost."
    );
    assert_eq!(summary["uplink"]["level"], "warn");
    assert_eq!(summary["verdict"]["level"], "warn");
    assert_eq!(
        summary["verdict"]["text"],
        "Working, but needs attention: Internet offline for 3 h."
    );
    assert_eq!(summary["links"]["rnode0"]["level"], "ok");
    assert_eq!(
        summary["neighbors"]["text"],
        "2 devices nearby, 1 not heard recently, 1 gone."
    );
}

#[tokio::test]
async fn neighbors_are_listed_most_alive_first() {
    let server = start(Fixture::new()).await;
    let doc = get(server.addr, "/api/v1/neighbors").await.json();
    let rows = doc["neighbors"].as_array().unwrap();
    let liveness: Vec<&str> = rows
        .iter()
        .map(|n| n["liveness"].as_str().unwrap())
        .collect();
    assert_eq!(liveness, ["active", "active", "stale", "gone"]);
    // Within "active", the most recently seen first.
    assert_eq!(rows[0]["device_id"], "77aa10c2d3e4f5a6b7c8d9e0f1a2b3c4");
    let first_active = &rows[1];
    for field in [
        "device_class",
        "power_state",
        "last_seen_ms",
        "rssi",
        "snr",
        "ledger_height",
        "protocol_version",
        "sync_capable",
        "sync_hint",
        "link",
    ] {
        assert!(
            first_active.get(field).is_some(),
            "neighbors[].{field} missing"
        );
    }
    assert_eq!(first_active["sync_hint"], "behind by 12");
    assert!(doc["now_ms"].is_u64());
}

#[tokio::test]
async fn queue_lists_the_backlog() {
    let server = start(Fixture::new()).await;
    let doc = get(server.addr, "/api/v1/queue").await.json();
    assert_eq!(doc["backlog"], 1204);
    assert_eq!(doc["by_type"]["heartbeat"], 1100);
    assert_eq!(doc["recent"][0]["seq"], 48_211);
    assert_eq!(doc["recent"][0]["message_type"], "heartbeat");
    assert!(doc["oldest_pending_ms"].is_u64());
    assert!(doc["now_ms"].is_u64());
}

#[tokio::test]
async fn healthz_is_200_when_store_and_links_are_fine_else_503_with_reasons() {
    let server = start(Fixture::new()).await;
    let reply = get(server.addr, "/healthz").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), serde_json::json!({"ok": true, "reasons": []}));

    {
        let mut status = server.fixture.status.lock().unwrap();
        status.links[1].state = LinkState::Down;
        status.storage.writable = false;
    }
    let reply = get(server.addr, "/healthz").await;
    assert_eq!(reply.status, 503);
    let body = reply.json();
    assert_eq!(body["ok"], false);
    let reasons: Vec<&str> = body["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        ["storage is not writable", "radio link gwmp0 is down"]
    );
}

// ---------------------------------------------------------------- metrics

#[tokio::test]
async fn metrics_are_prometheus_text_with_help_and_type_for_every_family() {
    let server = start(Fixture::new()).await;
    let reply = get(server.addr, "/metrics").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = reply.text();

    let mut helped = HashSet::new();
    let mut typed = HashMap::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(helped.insert(name.to_string()), "HELP twice for {name}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap().to_string();
            let kind = parts.next().unwrap().to_string();
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind.as_str()),
                "{line}"
            );
            assert!(helped.contains(&name), "TYPE before HELP for {name}");
            assert!(typed.insert(name, kind).is_none(), "TYPE twice: {line}");
        } else {
            assert!(!line.starts_with('#'), "unexpected comment: {line}");
            let (series, value) = line.rsplit_once(' ').expect("sample has a value");
            let family = series.split('{').next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    family
                        .strip_suffix(suffix)
                        .filter(|base| typed.get(*base).map(String::as_str) == Some("histogram"))
                })
                .unwrap_or(family);
            assert!(typed.contains_key(family), "sample before its TYPE: {line}");
            if family.ends_with("_total") {
                assert_eq!(typed[family], "counter", "{family}");
            }
            let parsed: f64 = value
                .parse()
                .or_else(|_| {
                    if value == "+Inf" {
                        Ok(f64::INFINITY)
                    } else {
                        Err(())
                    }
                })
                .unwrap_or_else(|_| panic!("bad value in {line}"));
            samples.insert(series.to_string(), parsed);
        }
    }

    let expect = |series: &str, value: f64| {
        assert_eq!(samples.get(series), Some(&value), "{series} in:\n{text}");
    };
    expect(
        "seed_link_frames_total{link=\"rnode0\",outcome=\"received\"}",
        51_877.0,
    );
    expect(
        "seed_link_frames_total{link=\"rnode0\",outcome=\"bad_crc\"}",
        40.0,
    );
    expect(
        "seed_frames_total{link=\"rnode0\",outcome=\"accepted\"}",
        51_400.0,
    );
    expect(
        "seed_frames_total{link=\"rnode0\",outcome=\"bad_signature\"}",
        3.0,
    );
    expect(
        "seed_frames_total{link=\"rnode0\",outcome=\"replayed\"}",
        2.0,
    );
    expect(
        "seed_frames_total{link=\"gwmp0\",outcome=\"accepted\"}",
        1_211.0,
    );
    expect(
        "seed_frames_total{link=\"gwmp0\",outcome=\"bad_signature\"}",
        0.0,
    );
    expect("seed_link_up{link=\"gwmp0\",kind=\"gwmp-udp\"}", 1.0);
    expect("seed_queue_depth", 1204.0);
    expect("seed_uplink_connected", 0.0);
    expect("seed_store_bytes", 48_500_000.0);
    expect("seed_store_quota_bytes", 512_000_000.0);
    expect("seed_neighbors{liveness=\"gone\"}", 1.0);
    expect(
        "seed_duty_cycle_used_seconds{band=\"g1 868.0-868.6 MHz\"}",
        4.3,
    );
    // The histogram is cumulative and ends in +Inf = count.
    expect(
        "seed_uplink_publish_latency_seconds_bucket{le=\"0.05\"}",
        1.0,
    );
    expect(
        "seed_uplink_publish_latency_seconds_bucket{le=\"0.25\"}",
        4.0,
    );
    expect(
        "seed_uplink_publish_latency_seconds_bucket{le=\"+Inf\"}",
        5.0,
    );
    expect("seed_uplink_publish_latency_seconds_count", 5.0);
    let ratio = samples["seed_duty_cycle_used_ratio{band=\"g3 869.4-869.65 MHz\"}"];
    assert!((ratio - 0.2527).abs() < 0.001, "{ratio}");
    let age = samples["seed_queue_oldest_age_seconds"];
    assert!((10_900.0..11_000.0).contains(&age), "{age}");
}

// ---------------------------------------------------------------- the page

#[tokio::test]
async fn page_and_its_assets_are_self_contained_and_under_100_kb() {
    let server = start(Fixture::new()).await;
    let page = get(server.addr, "/").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = page.text();

    let mut assets = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for piece in html.split(attribute).skip(1) {
            let target = piece.split('"').next().unwrap();
            if target.starts_with("/assets/") {
                assets.push(target.to_string());
            }
        }
    }
    assets.sort();
    assert_eq!(assets, ["/assets/app.js", "/assets/style.css"]);

    let mut total = page.body.len();
    let mut texts = vec![html.clone()];
    for asset in &assets {
        let reply = get(server.addr, asset).await;
        assert_eq!(reply.status, 200, "{asset}");
        total += reply.body.len();
        texts.push(reply.text());
    }
    assert!(total < 100 * 1024, "page + assets are {total} bytes");

    // Nothing from the Internet: the kiosk has none. (The SVG namespace is a name, not a fetch.)
    for text in &texts {
        let outside = text
            .replace("http://www.w3.org/2000/svg", "")
            .contains("://");
        assert!(!outside, "an asset refers to another site");
        assert!(!text.contains("@import") && !text.contains("url("));
    }

    // Stable hooks for the browser tests.
    for id in [
        "verdict",
        "verdict-text",
        "live",
        "gateway-id",
        "gateway-version",
        "gateway-uptime",
        "uplink-summary",
        "links",
        "neighbors",
        "neighbors-summary",
        "show-gone",
        "events",
        "mailboxes-summary",
        "traffic-chart",
        "duty-cycle",
        "storage-summary",
        "admin-link",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "#{id} missing");
    }
}

#[tokio::test]
async fn assets_revalidate_with_etags() {
    let server = start(Fixture::new()).await;
    let first = get(server.addr, "/assets/app.js").await;
    let etag = first.header("etag").expect("etag").to_string();
    assert_eq!(first.header("cache-control"), Some("no-cache"));
    let again = get_with(server.addr, "/assets/app.js", &[("If-None-Match", &etag)]).await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    let other = get_with(server.addr, "/assets/app.js", &[("If-None-Match", "\"x\"")]).await;
    assert_eq!(other.status, 200);
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let server = start(Fixture::new()).await;
    for path in ["/", "/api/v1/status", "/admin/login", "/nowhere"] {
        let reply = get(server.addr, path).await;
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(reply.header("x-frame-options"), Some("DENY"));
        let csp = reply.header("content-security-policy").unwrap_or("");
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
    }
}

// ---------------------------------------------------------------- bad requests

#[tokio::test]
async fn bad_requests_get_clear_status_codes() {
    let server = start(Fixture::new()).await;
    let addr = server.addr;
    assert_eq!(get(addr, "/api/v2/status").await.status, 404);
    assert_eq!(get(addr, "/admin/nothing").await.status, 404);
    assert_eq!(
        request(addr, "POST", "/api/v1/status", &[], b"x")
            .await
            .status,
        405
    );
    assert_eq!(
        request(addr, "DELETE", "/healthz", &[], b"").await.status,
        405
    );
    assert_eq!(get(addr, "/admin/flush-uplink").await.status, 405);
    let put = request(addr, "PUT", "/metrics", &[], b"").await;
    assert_eq!(put.status, 405);
    assert_eq!(put.header("allow"), Some("GET,HEAD"));
}

#[tokio::test]
async fn oversized_form_bodies_are_refused_with_413() {
    let server = start(Fixture::new()).await;
    let body = format!("password={}", "a".repeat(100 * 1024));
    let reply = request(
        server.addr,
        "POST",
        "/admin/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 413);
    assert!(server.fixture.actions().is_empty());
}

// ---------------------------------------------------------------- admin

/// Opens the login form; returns (cookie header value, csrf token).
async fn login_form(server: &Server) -> (String, String) {
    let reply = get(server.addr, "/admin/login").await;
    assert_eq!(reply.status, 200);
    let cookie = reply.cookie("seed_login").expect("login cookie");
    (format!("seed_login={cookie}"), csrf_in(&reply))
}

fn csrf_in(reply: &Reply) -> String {
    let html = reply.text();
    let start = html
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no csrf field in {html}"))
        + "name=\"csrf\" value=\"".len();
    html[start..].split('"').next().unwrap().to_string()
}

/// Logs in; returns (session cookie header value, session csrf token).
async fn log_in(server: &Server) -> (String, String) {
    let (cookie, csrf) = login_form(server).await;
    let reply = post_form(
        server.addr,
        "/admin/login",
        Some(&cookie),
        &[("password", PASSWORD), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(reply.status, 303, "{}", reply.text());
    assert_eq!(reply.header("location"), Some("/admin"));
    let session = format!("seed_session={}", reply.cookie("seed_session").unwrap());
    let page = get_with(server.addr, "/admin", &[("Cookie", &session)]).await;
    assert_eq!(page.status, 200);
    (session, csrf_in(&page))
}

#[tokio::test]
async fn admin_without_a_session_redirects_to_login() {
    let server = start(Fixture::new()).await;
    let reply = get(server.addr, "/admin").await;
    assert_eq!(reply.status, 303);
    assert_eq!(reply.header("location"), Some("/admin/login"));

    for path in [
        "/admin/flush-uplink",
        "/admin/restart-link",
        "/admin/diagnostics",
        "/admin/logout",
    ] {
        let reply = post_form(
            server.addr,
            path,
            Some("seed_session=made-up"),
            &[("csrf", "x"), ("link", "rnode0")],
        )
        .await;
        assert_eq!(reply.status, 303, "{path}");
        assert_eq!(reply.header("location"), Some("/admin/login"), "{path}");
    }
    assert!(server.fixture.actions().is_empty());
}

#[tokio::test]
async fn login_runs_actions_and_logs_out() {
    let server = start(Fixture::new()).await;
    let addr = server.addr;

    let form = get(addr, "/admin/login").await;
    assert!(form.text().contains("id=\"login-form\""));
    let line = form.set_cookie_line("seed_login").unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(line.contains(attribute), "{line}");
    }

    let (cookie, csrf) = login_form(&server).await;
    let reply = post_form(
        addr,
        "/admin/login",
        Some(&cookie),
        &[("password", PASSWORD), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(reply.status, 303);
    let line = reply.set_cookie_line("seed_session").unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(line.contains(attribute), "{line}");
    }
    let id = reply.cookie("seed_session").unwrap();
    assert_eq!(id.len(), 64, "session id is 32 random bytes in hex");
    let session = format!("seed_session={id}");

    let page = get_with(addr, "/admin", &[("Cookie", &session)]).await;
    assert_eq!(page.status, 200);
    let html = page.text();
    for id in [
        "restart-link-rnode0",
        "restart-link-gwmp0",
        "flush-uplink",
        "download-diagnostics",
        "upload-update",
        "logout-form",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "#{id} missing");
    }
    let token = csrf_in(&page);
    assert_ne!(token, csrf, "the session has its own token");
    assert_eq!(
        html.matches(&format!("value=\"{token}\"")).count(),
        6,
        "every form carries the token"
    );

    let reply = post_form(
        addr,
        "/admin/flush-uplink",
        Some(&session),
        &[("csrf", &token)],
    )
    .await;
    assert_eq!(reply.status, 303);
    assert_eq!(reply.header("location"), Some("/admin"));
    // A logged-in visit to the login form goes back to admin and keeps the message.
    let detour = get_with(addr, "/admin/login", &[("Cookie", &session)]).await;
    assert_eq!(detour.status, 303);
    assert_eq!(detour.header("location"), Some("/admin"));
    let page = get_with(addr, "/admin", &[("Cookie", &session)]).await;
    assert!(page.text().contains("id=\"admin-message\""));
    assert!(page.text().contains("Sending waiting messages now."));
    let page = get_with(addr, "/admin", &[("Cookie", &session)]).await;
    assert!(
        !page.text().contains("admin-message"),
        "message shown twice"
    );

    let reply = post_form(
        addr,
        "/admin/restart-link",
        Some(&session),
        &[("csrf", &token), ("link", "rnode0")],
    )
    .await;
    assert_eq!(reply.status, 303);
    let reply = post_form(
        addr,
        "/admin/restart-link",
        Some(&session),
        &[("csrf", &token), ("link", "<nope>")],
    )
    .await;
    assert_eq!(reply.status, 303);
    let page = get_with(addr, "/admin", &[("Cookie", &session)]).await;
    assert!(page
        .text()
        .contains("There is no radio called &lt;nope&gt;."));
    assert_eq!(
        server.fixture.actions(),
        [
            AdminAction::FlushUplink,
            AdminAction::RestartLink("rnode0".into()),
            AdminAction::RestartLink("<nope>".into()),
        ]
    );

    let bundle = post_form(
        addr,
        "/admin/diagnostics",
        Some(&session),
        &[("csrf", &token)],
    )
    .await;
    assert_eq!(bundle.status, 200);
    assert_eq!(
        bundle.header("content-disposition"),
        Some("attachment; filename=\"seed-gateway-gw-kiosk-diagnostics.txt\"")
    );
    assert!(bundle.text().contains("password = \"<removed>\""));

    let reply = post_form(addr, "/admin/logout", Some(&session), &[("csrf", &token)]).await;
    assert_eq!(reply.status, 303);
    assert!(reply
        .set_cookie_line("seed_session")
        .unwrap()
        .contains("Max-Age=0"));
    let reply = get_with(addr, "/admin", &[("Cookie", &session)]).await;
    assert_eq!(reply.status, 303, "session still valid after logout");
}

#[tokio::test]
async fn forms_with_a_wrong_csrf_token_are_refused_with_403() {
    let server = start(Fixture::new()).await;
    let (session, token) = log_in(&server).await;
    for (path, fields) in [
        ("/admin/flush-uplink", vec![("csrf", "forged")]),
        (
            "/admin/restart-link",
            vec![("csrf", "forged"), ("link", "rnode0")],
        ),
        ("/admin/diagnostics", vec![]),
        ("/admin/logout", vec![("csrf", "")]),
    ] {
        let reply = post_form(server.addr, path, Some(&session), &fields).await;
        assert_eq!(reply.status, 403, "{path}");
        assert!(reply.text().contains("id=\"admin-forbidden\""), "{path}");
    }
    assert!(server.fixture.actions().is_empty());
    // The session itself is still fine.
    let reply = post_form(
        server.addr,
        "/admin/flush-uplink",
        Some(&session),
        &[("csrf", &token)],
    )
    .await;
    assert_eq!(reply.status, 303);

    // Login has its own token: a form without the matching cookie is refused too.
    let (_, login_token) = login_form(&server).await;
    let reply = post_form(
        server.addr,
        "/admin/login",
        Some("seed_login=other"),
        &[("password", PASSWORD), ("csrf", &login_token)],
    )
    .await;
    assert_eq!(reply.status, 403);
    assert!(reply.text().contains("id=\"login-error\""));
    assert!(reply.cookie("seed_session").is_none());
}

#[tokio::test]
async fn wrong_password_is_401_and_repeated_attempts_hit_429() {
    let server = start(Fixture::new()).await;
    let (cookie, csrf) = login_form(&server).await;
    for attempt in 1..=5 {
        let reply = post_form(
            server.addr,
            "/admin/login",
            Some(&cookie),
            &[("password", "guess"), ("csrf", &csrf)],
        )
        .await;
        assert_eq!(reply.status, 401, "attempt {attempt}");
        let html = reply.text();
        assert!(html.contains("id=\"login-error\""));
        assert!(html.contains("Wrong password."));
        assert!(html.contains("id=\"login-form\""), "form shown again");
        assert!(reply.cookie("seed_session").is_none());
    }
    // Now even the right password waits.
    let reply = post_form(
        server.addr,
        "/admin/login",
        Some(&cookie),
        &[("password", PASSWORD), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(reply.status, 429);
    let wait: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(reply.text().contains("Too many wrong passwords"));
    assert!(reply.cookie("seed_session").is_none());
}

#[tokio::test]
async fn without_a_password_hash_admin_explains_how_to_switch_it_on() {
    let server = start(Fixture::with_hash(None)).await;
    for path in ["/admin", "/admin/login"] {
        let reply = get(server.addr, path).await;
        assert_eq!(reply.status, 200, "{path}");
        let html = reply.text();
        assert!(html.contains("id=\"admin-disabled\""), "{path}");
        assert!(html.contains("seed-gateway set-admin-password"), "{path}");
        assert!(!html.contains("login-form"), "{path}");
    }
    let reply = post_form(
        server.addr,
        "/admin/login",
        None,
        &[("password", ""), ("csrf", "")],
    )
    .await;
    assert_eq!(reply.status, 403);

    // A broken hash is reported as such, not treated as a wrong password.
    *server.fixture.hash.lock().unwrap() = Some("not-a-phc-string".into());
    let reply = get(server.addr, "/admin").await;
    assert_eq!(reply.status, 503);
    assert!(reply.text().contains("cannot be used"));
}

// ---------------------------------------------------------------- secrets

#[tokio::test]
async fn read_only_responses_never_contain_secrets() {
    let server = start(Fixture::new()).await;
    let hash = server.fixture.hash();
    let salt_and_digest = hash.rsplit('$').take(2).collect::<Vec<_>>();
    assert!(hash.starts_with("$argon2id$"));

    let mut replies = Vec::new();
    for path in [
        "/",
        "/assets/app.js",
        "/assets/style.css",
        "/api/v1/status",
        "/api/v1/neighbors",
        "/api/v1/queue",
        "/metrics",
        "/healthz",
        "/admin",
        "/admin/login",
        "/nowhere",
    ] {
        replies.push((path.to_string(), get(server.addr, path).await));
    }
    let mut stream = EventStream::open(server.addr, "/api/v1/events").await;
    let status = stream.until("status event", |e| e.event == "status").await;

    let mut texts: Vec<(String, String)> = replies
        .iter()
        .map(|(path, reply)| {
            let headers: String = reply
                .headers
                .iter()
                .map(|(k, v)| format!("{k}: {v}\n"))
                .collect();
            (path.clone(), headers + &reply.text())
        })
        .collect();
    texts.push(("/api/v1/events".into(), status.data));

    for (path, text) in &texts {
        assert!(!text.contains(PASSWORD), "{path} leaks the password");
        assert!(!text.contains(&hash), "{path} leaks the password hash");
        for part in &salt_and_digest {
            assert!(!text.contains(part), "{path} leaks part of the hash");
        }
        assert!(
            !text.contains(BROKER_SECRET),
            "{path} leaks the broker password"
        );
    }
}

// ---------------------------------------------------------------- live events

#[tokio::test]
async fn live_stream_sends_a_snapshot_then_pushed_events_and_changes() {
    let server = start(Fixture::new()).await;
    let mut stream = EventStream::open(server.addr, "/api/v1/events").await;
    assert_eq!(stream.status, 200);
    let content_type = stream
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.clone());
    assert_eq!(content_type.as_deref(), Some("text/event-stream"));

    let hello = stream.until("retry hint", |e| e.retry.is_some()).await;
    assert_eq!(hello.retry.as_deref(), Some("2000"));
    let status = stream.until("first status", |e| e.event == "status").await;
    let doc: serde_json::Value = serde_json::from_str(&status.data).unwrap();
    assert_eq!(doc["uplink"]["backlog"], 1204);
    assert!(doc["summary"]["verdict"]["text"].is_string());
    let neighbors = stream.until("neighbors", |e| e.event == "neighbors").await;
    let doc: serde_json::Value = serde_json::from_str(&neighbors.data).unwrap();
    assert_eq!(doc["neighbors"].as_array().unwrap().len(), 4);

    let pushed = EventView {
        at_ms: web_ui::now_ms(),
        level: EventLevel::Error,
        kind: "link_down".into(),
        text: "Radio rnode0 unplugged.".into(),
    };
    server
        .fixture
        .live
        .send(LiveEvent::Event(pushed))
        .expect("the page subscribed");
    let event = stream.until("pushed event", |e| e.event == "event").await;
    let doc: serde_json::Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(doc["text"], "Radio rnode0 unplugged.");
    assert_eq!(doc["level"], "error");
    assert_eq!(doc["kind"], "link_down");

    server.fixture.status.lock().unwrap().uplink.backlog = 7;
    server.fixture.live.send(LiveEvent::Changed).unwrap();
    let status = stream
        .until("status with the new backlog", |e| {
            e.event == "status" && e.data.contains("\"backlog\":7")
        })
        .await;
    assert!(
        status.data.contains("7 messages waiting"),
        "{}",
        status.data
    );
}

#[tokio::test]
async fn shutdown_ends_open_event_streams_and_the_server() {
    let server = start(Fixture::new()).await;
    let mut stream = EventStream::open(server.addr, "/api/v1/events").await;
    stream.until("first status", |e| e.event == "status").await;

    server.shutdown.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while stream.next().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "event stream still open after shutdown");
    let result = tokio::time::timeout(Duration::from_secs(10), server.task)
        .await
        .expect("server did not stop after shutdown");
    result.expect("server task panicked").expect("server error");
}

#[tokio::test]
async fn password_hashes_made_by_the_crate_verify_at_login() {
    let fixture = Fixture::with_hash(Some(web_ui::hash_password("field-tech-2024").unwrap()));
    let server = start(fixture).await;
    let (cookie, csrf) = login_form(&server).await;
    let reply = post_form(
        server.addr,
        "/admin/login",
        Some(&cookie),
        &[("password", "field-tech-2024"), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(reply.status, 303);
    assert!(reply.cookie("seed_session").is_some());
}

#[tokio::test]
async fn open_event_streams_are_bounded() {
    let server = start(Fixture::new()).await;
    let mut open = Vec::new();
    for _ in 0..32 {
        let mut stream = EventStream::open(server.addr, "/api/v1/events").await;
        assert_eq!(stream.status, 200);
        stream.until("first status", |e| e.event == "status").await;
        open.push(stream);
    }
    let refused = get(server.addr, "/api/v1/events").await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("10"));
    // The rest of the interface is unaffected.
    assert_eq!(get(server.addr, "/api/v1/status").await.status, 200);
}

#[tokio::test]
async fn split_message_counters_are_in_status_metrics_and_words() {
    let server = start(Fixture::new()).await;
    let doc = get(server.addr, "/api/v1/status").await.json();
    let f = &doc["fragments"];
    assert_eq!(f["completed"], 41);
    assert_eq!(f["timed_out"], 2);
    assert_eq!(f["evicted_for_memory"], 1);
    assert_eq!(f["malformed"], 5);
    assert_eq!(f["duplicates"], 7);
    assert_eq!(
        doc["summary"]["fragments"]["text"],
        "3 split messages could not be completed (pieces missing); 5 broken message pieces ignored."
    );
    assert_eq!(doc["summary"]["fragments"]["level"], "warn");

    let text = get(server.addr, "/metrics").await.text();
    assert!(
        text.contains("# TYPE seed_fragments_total counter"),
        "{text}"
    );
    for (outcome, value) in [
        ("completed", 41),
        ("timed_out", 2),
        ("evicted_for_memory", 1),
        ("malformed", 5),
        ("duplicate", 7),
    ] {
        let line = format!("seed_fragments_total{{outcome=\"{outcome}\"}} {value}");
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }

    // Nothing went wrong: no sentence, and the page keeps its line hidden.
    server.fixture.status.lock().unwrap().fragments = Default::default();
    let doc = get(server.addr, "/api/v1/status").await.json();
    assert!(doc["summary"]["fragments"].is_null(), "{}", doc["summary"]);
    let page = get(server.addr, "/").await.text();
    assert!(page.contains("id=\"fragments-summary\" class=\"line\" hidden"));
}

// ---------------------------------------------------------------- update upload

/// A multipart body with the fields in this order; `file` is (field name, file name, bytes).
fn multipart(fields: &[(&str, &str)], file: Option<(&str, &str, &[u8])>) -> (String, Vec<u8>) {
    let boundary = "----seed-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    if let Some((name, file_name, bytes)) = file {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn files_in(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

#[tokio::test]
async fn an_uploaded_bundle_reaches_the_gateway_only_with_a_session_and_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Fixture::new();
    *fixture.upload_dir.lock().unwrap() = Some(dir.path().to_path_buf());
    let server = start(fixture).await;
    let (session, csrf) = log_in(&server).await;
    // Larger than any form may be: the upload has its own limit.
    let bundle: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();

    // A wrong token: refused before a byte is stored.
    let (content_type, body) =
        multipart(&[("csrf", "forged")], Some(("bundle", "u.raucb", &bundle)));
    let headers = [
        ("Content-Type", content_type.as_str()),
        ("Cookie", session.as_str()),
    ];
    let reply = request(server.addr, "POST", "/admin/update", &headers, &body).await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(files_in(dir.path()).is_empty());
    assert!(server.fixture.actions().is_empty());

    // The token after the file: refused too (it would have to be stored unchecked).
    let (content_type, mut body) = multipart(&[], Some(("bundle", "u.raucb", &bundle)));
    body.truncate(body.len() - "----seed-test-boundary-7MA4YWxkTrZu0gW--\r\n".len());
    body.extend_from_slice(
        format!("------seed-test-boundary-7MA4YWxkTrZu0gW\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n------seed-test-boundary-7MA4YWxkTrZu0gW--\r\n").as_bytes(),
    );
    let headers = [
        ("Content-Type", content_type.as_str()),
        ("Cookie", session.as_str()),
    ];
    let reply = request(server.addr, "POST", "/admin/update", &headers, &body).await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(files_in(dir.path()).is_empty());

    // Properly: stored whole, handed over with the checkbox, outcome shown.
    let (content_type, body) = multipart(
        &[("csrf", &csrf), ("allow_downgrade", "on")],
        Some(("bundle", "u.raucb", &bundle)),
    );
    let headers = [
        ("Content-Type", content_type.as_str()),
        ("Cookie", session.as_str()),
    ];
    let reply = request(server.addr, "POST", "/admin/update", &headers, &body).await;
    assert_eq!(reply.status, 303, "{}", reply.text());
    assert_eq!(reply.header("location"), Some("/admin"));
    let actions = server.fixture.actions();
    let [AdminAction::InstallUpdate {
        bundle: path,
        allow_downgrade,
    }] = actions.as_slice()
    else {
        panic!("expected one InstallUpdate, got {actions:?}");
    };
    assert!(*allow_downgrade);
    assert!(path.starts_with(dir.path()), "{path:?}");
    assert_eq!(
        std::fs::read(path).unwrap(),
        bundle,
        "the stored upload is byte for byte the file"
    );
    let page = get_with(server.addr, "/admin", &[("Cookie", &session)]).await;
    assert!(
        page.text().contains("Update to version 2.0.0 started"),
        "{}",
        page.text()
    );
    assert!(page.text().contains("id=\"upload-update\""));
}

#[tokio::test]
async fn an_upload_to_a_gateway_without_updates_is_declined_and_not_kept() {
    let server = start(Fixture::new()).await;
    let (session, csrf) = log_in(&server).await;
    let (content_type, body) =
        multipart(&[("csrf", &csrf)], Some(("bundle", "u.raucb", b"bundle")));
    let headers = [
        ("Content-Type", content_type.as_str()),
        ("Cookie", session.as_str()),
    ];
    let reply = request(server.addr, "POST", "/admin/update", &headers, &body).await;
    assert_eq!(reply.status, 303, "{}", reply.text());
    assert!(server.fixture.actions().is_empty());
    let page = get_with(server.addr, "/admin", &[("Cookie", &session)]).await;
    assert!(
        page.text().contains("Updates are not enabled"),
        "{}",
        page.text()
    );
}

#[tokio::test]
async fn an_upload_larger_than_the_room_left_is_refused_and_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Fixture::new();
    *fixture.upload_dir.lock().unwrap() = Some(dir.path().to_path_buf());
    *fixture.upload_room.lock().unwrap() = Some(100_000);
    let server = start(fixture).await;
    let (session, csrf) = log_in(&server).await;
    let bundle = vec![0x5a; 150_000];
    let (content_type, body) = multipart(&[("csrf", &csrf)], Some(("bundle", "u.raucb", &bundle)));
    let headers = [
        ("Content-Type", content_type.as_str()),
        ("Cookie", session.as_str()),
    ];
    let reply = request(server.addr, "POST", "/admin/update", &headers, &body).await;
    assert_eq!(reply.status, 303, "{}", reply.text());
    assert!(
        server.fixture.actions().is_empty(),
        "nothing handed to the gateway"
    );
    assert!(files_in(dir.path()).is_empty(), "nothing kept");
    let page = get_with(server.addr, "/admin", &[("Cookie", &session)]).await;
    assert!(
        page.text().contains("Not enough space for this update"),
        "{}",
        page.text()
    );
}
