//! The update command the backend publishes on `…/ota/command`.
//!
//! ```json
//! {"id": "rollout-42", "url": "https://updates.example/seed-2.1.0.raucb",
//!  "version": "2.1.0", "sha256": "9f86d0…", "allow_downgrade": false}
//! ```
//!
//! `url` (http or https), `version` (what the bundle must say it is) and
//! `sha256` (of the whole bundle file) are required: the hash protects
//! against a damaged or swapped download before RAUC even looks at it, and
//! the signature check then protects against a backend that was fooled.
//! `id` is echoed in every progress message (default: the hash's first 16
//! hex digits). Unknown fields are refused, so a misspelt
//! `allow_downgarde` cannot silently mean "no".

use serde::{Deserialize, Serialize};

/// One update to carry out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateCommand {
    #[serde(default)]
    pub id: String,
    pub url: String,
    pub version: String,
    pub sha256: String,
    #[serde(default)]
    pub allow_downgrade: bool,
}

/// Longest id or version we accept (they end up in topics' payloads and in
/// the status page).
const MAX_LABEL: usize = 128;

impl UpdateCommand {
    /// Parses and checks a command; the error is a sentence for `ota/progress`.
    pub fn parse(payload: &[u8]) -> Result<UpdateCommand, String> {
        let mut command: UpdateCommand = serde_json::from_slice(payload)
            .map_err(|e| format!("the update command is not valid: {e}"))?;
        command.sha256 = command.sha256.trim().to_ascii_lowercase();
        if command.sha256.len() != 64 || !command.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("the update command's sha256 must be 64 hex digits".into());
        }
        let scheme_ok = url::Url::parse(&command.url)
            .map(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .unwrap_or(false);
        if !scheme_ok {
            return Err(format!(
                "the update command's url {:?} is not an http:// or https:// address",
                command.url
            ));
        }
        if command.version.trim().is_empty() || command.version.len() > MAX_LABEL {
            return Err("the update command's version is empty or too long".into());
        }
        if command.id.len() > MAX_LABEL {
            return Err("the update command's id is too long".into());
        }
        if command.id.is_empty() {
            command.id = command.sha256[..16].to_string();
        }
        Ok(command)
    }
}

#[cfg(test)]
mod tests {
    use super::UpdateCommand;

    const HASH: &str = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";

    #[test]
    fn a_full_command_parses_and_the_hash_is_normalised() {
        let text = format!(
            r#"{{"id":"r1","url":"http://10.0.2.2:8000/b.raucb","version":"2.0.0","sha256":"{HASH}","allow_downgrade":true}}"#
        );
        let c = UpdateCommand::parse(text.as_bytes()).unwrap();
        assert_eq!(c.id, "r1");
        assert_eq!(c.sha256, HASH.to_ascii_lowercase());
        assert!(c.allow_downgrade);
    }

    #[test]
    fn the_id_defaults_to_the_hash_prefix() {
        let text = format!(r#"{{"url":"https://u.example/b","version":"2","sha256":"{HASH}"}}"#);
        let c = UpdateCommand::parse(text.as_bytes()).unwrap();
        assert_eq!(c.id, "9f86d081884c7d65");
        assert!(!c.allow_downgrade);
    }

    #[test]
    fn bad_commands_say_what_is_wrong() {
        let cases = [
            (
                r#"{"url":"http://h/b","version":"2"}"#.to_string(),
                "sha256",
            ),
            (
                format!(r#"{{"url":"ftp://h/b","version":"2","sha256":"{HASH}"}}"#),
                "not an http",
            ),
            (
                format!(r#"{{"url":"http://h/b","version":"","sha256":"{HASH}"}}"#),
                "version",
            ),
            (
                r#"{"url":"http://h/b","version":"2","sha256":"abc"}"#.to_string(),
                "64 hex digits",
            ),
            (
                format!(
                    r#"{{"url":"http://h/b","version":"2","sha256":"{HASH}","allow_downgarde":true}}"#
                ),
                "allow_downgarde",
            ),
            ("not json".to_string(), "not valid"),
        ];
        for (text, expected) in cases {
            let err = UpdateCommand::parse(text.as_bytes()).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
