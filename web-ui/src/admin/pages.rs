//! The admin pages, rendered on the server as small HTML documents.
//!
//! They share `/assets/style.css` with the status page and need no script. Every value that
//! comes from the gateway passes through [`escape`]. Element ids are stable: the browser
//! tests select by them.

use std::fmt::Write;

use crate::auth::session::Flash;
use crate::model::Status;

/// Escapes text for use in HTML content and in double-quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A name reduced to characters that are safe in an element id (`rnode0`, `gwmp-1`).
pub fn id_part(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><link rel=\"icon\" href=\"data:,\">\
         <link rel=\"stylesheet\" href=\"/assets/style.css\"></head>\
         <body class=\"admin\"><header class=\"top\"><h1>{title}</h1>\
         <a class=\"back\" href=\"/\" id=\"back-to-status\">Status page</a></header>\
         <main>{body}</main></body></html>\n",
        title = escape(title)
    )
}

fn csrf_field(token: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(token)
    )
}

/// The login form, optionally with the reason the last attempt failed.
pub fn login(csrf: &str, error: Option<&str>) -> String {
    let error = match error {
        Some(text) => format!(
            "<p class=\"notice bad\" id=\"login-error\" role=\"alert\">{}</p>",
            escape(text)
        ),
        None => String::new(),
    };
    let body = format!(
        "<section class=\"card\"><h2>Log in</h2>{error}\
         <form id=\"login-form\" method=\"post\" action=\"/admin/login\">{csrf}\
         <label for=\"password\">Admin password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" \
         autocomplete=\"current-password\" required autofocus>\
         <button id=\"login-submit\" type=\"submit\">Log in</button></form></section>",
        csrf = csrf_field(csrf)
    );
    layout("Gateway admin", &body)
}

/// Admin is unavailable: no password set (`broken` false) or the stored one is unusable.
pub fn switched_off(hint: &str, broken: bool) -> String {
    let why = if broken {
        "The admin password stored on this gateway cannot be used."
    } else {
        "Admin is switched off because no admin password is set."
    };
    let body = format!(
        "<section class=\"card\" id=\"admin-disabled\"><h2>Admin is switched off</h2>\
         <p>{}</p><p id=\"admin-setup-hint\">{}</p>\
         <p>The status page works without a password.</p></section>",
        escape(why),
        escape(hint)
    );
    layout("Gateway admin", &body)
}

/// A form came back with a token that does not belong to the session.
pub fn forged_form() -> String {
    layout(
        "Gateway admin",
        "<section class=\"card\" id=\"admin-forbidden\"><h2>Not done</h2>\
         <p class=\"notice bad\">This form was out of date or did not come from this \
         gateway's admin page, so nothing was changed.</p>\
         <p><a href=\"/admin\">Open the admin page again</a></p></section>",
    )
}

/// The logged-in page: one form per action, each carrying the session's CSRF token.
pub fn dashboard(status: &Status, csrf: &str, flash: Option<&Flash>) -> String {
    let token = csrf_field(csrf);
    let mut body = String::new();

    if let Some(flash) = flash {
        let _ = write!(
            body,
            "<p class=\"notice {}\" id=\"admin-message\" role=\"status\">{}</p>",
            if flash.ok { "ok" } else { "bad" },
            escape(&flash.text)
        );
    }

    let _ = write!(
        body,
        "<p class=\"muted\">Gateway <span id=\"admin-gateway-id\">{}</span>, version {}</p>",
        escape(&status.gateway.id),
        escape(&status.gateway.version)
    );

    body.push_str("<section class=\"card\" id=\"admin-links\"><h2>Radios</h2>");
    if status.links.is_empty() {
        body.push_str("<p>No radio is set up.</p>");
    }
    for link in &status.links {
        let _ = write!(
            body,
            "<form class=\"action\" id=\"restart-link-{id}\" method=\"post\" \
             action=\"/admin/restart-link\">{token}\
             <input type=\"hidden\" name=\"link\" value=\"{name}\">\
             <span><b>{name}</b> <span class=\"badge {state}\">{state}</span></span>\
             <button type=\"submit\">Restart</button></form>",
            id = id_part(&link.name),
            name = escape(&link.name),
            state = link.state.as_str(),
        );
    }
    body.push_str("</section>");

    let _ = write!(
        body,
        "<section class=\"card\"><h2>Internet</h2>\
         <p>{backlog} waiting.</p>\
         <form class=\"action\" id=\"flush-uplink\" method=\"post\" action=\"/admin/flush-uplink\">\
         {token}<span>Try to send waiting messages now</span>\
         <button type=\"submit\">Send now</button></form></section>",
        backlog = crate::wording::messages(status.uplink.backlog),
    );

    if let Some(update) = &status.update {
        let _ = write!(
            body,
            "<section class=\"card\" id=\"admin-update\"><h2>Software update</h2>\
             <p id=\"admin-update-state\">Running version {running}; last update: {state}.</p>\
             <form id=\"upload-update\" method=\"post\" action=\"/admin/update\" \
             enctype=\"multipart/form-data\">{token}\
             <label><input type=\"checkbox\" name=\"allow_downgrade\" value=\"on\"> \
             Allow an older version</label>\
             <label for=\"bundle\">Update bundle (.raucb)</label>\
             <input id=\"bundle\" name=\"bundle\" type=\"file\" accept=\".raucb\" required>\
             <button type=\"submit\">Install</button></form>\
             <p class=\"muted\">The bundle's signature and board are checked before anything \
             is changed; the gateway restarts into the new version and goes back by itself if \
             it does not work.</p></section>",
            running = escape(&update.running_version),
            state = escape(&update.state),
        );
    }

    let _ = write!(
        body,
        "<section class=\"card\"><h2>Diagnostics</h2>\
         <form class=\"action\" id=\"download-diagnostics\" method=\"post\" \
         action=\"/admin/diagnostics\">{token}\
         <span>Logs and settings, passwords removed, for support</span>\
         <button type=\"submit\">Download</button></form></section>"
    );

    let _ = write!(
        body,
        "<form id=\"logout-form\" method=\"post\" action=\"/admin/logout\">{token}\
         <button type=\"submit\" class=\"secondary\">Log out</button></form>"
    );

    layout("Gateway admin", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(id_part("rnode 0/\"x\""), "rnode-0--x-");
    }

    #[test]
    fn login_page_carries_the_token_and_the_error() {
        let page = login("tok123", Some("Wrong <password>."));
        assert!(page.contains("name=\"csrf\" value=\"tok123\""));
        assert!(page.contains("id=\"login-error\""));
        assert!(page.contains("Wrong &lt;password&gt;."));
        assert!(!login("t", None).contains("login-error"));
    }
}
