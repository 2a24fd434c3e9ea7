//! `set-admin-password --data-dir DIR`: switches the admin pages on, or
//! changes their password.
//!
//! The password comes from stdin, one line, so it never shows up in the
//! process list or the shell history; scripts pipe it in, and a technician
//! at a terminal types it twice with echo off. Only its argon2id hash is
//! kept, in `DIR/admin.hash` (mode 0600), which the gateway reads on every
//! admin request: a running gateway takes the new password at once, without
//! a restart. The file is written beside its final name and renamed into
//! place, so the gateway never reads half a hash.

use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use super::fail;

/// Shorter passwords are refused: the admin pages can flush queues and
/// download the installation's diagnostics.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// Longer passwords are refused: they could not be typed into the login
/// form anyway, and nobody means to set one.
pub const MAX_PASSWORD_CHARS: usize = 1024;

#[derive(clap::Args)]
pub struct SetAdminPasswordArgs {
    /// The gateway's data directory (`gateway.data_dir` of its config;
    /// `/data/seed-gateway` on the appliance). Created if missing.
    #[arg(long)]
    data_dir: PathBuf,
}

pub fn set_admin_password(args: SetAdminPasswordArgs) -> ExitCode {
    let stdin = io::stdin();
    let password = if stdin.is_terminal() {
        read_interactively()
    } else {
        read_line(&mut stdin.lock())
    };
    let password = match password.and_then(|p| check_password(&p).map(|()| p)) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let hash = match web_ui::hash_password(&password) {
        Ok(h) => h,
        Err(e) => return fail(e),
    };
    match write_hash(&args.data_dir, &hash) {
        Ok(path) => {
            println!(
                "Admin password set: its hash is in {}. The gateway uses it from the next login; no restart needed.",
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// The first line of `input`, without its line ending.
fn read_line(input: &mut impl BufRead) -> Result<String, String> {
    let mut line = String::new();
    match input.read_line(&mut line) {
        Ok(0) => Err("no password on stdin: give it as one line, e.g. \
             `echo 'my password' | seed-gateway set-admin-password --data-dir DIR`"
            .into()),
        Ok(_) => Ok(line
            .strip_suffix('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .unwrap_or(&line)
            .to_string()),
        Err(e) => Err(format!("cannot read the password from stdin: {e}")),
    }
}

/// Refuses passwords nobody should use; the message says what to do instead.
pub fn check_password(password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if password.trim().is_empty() {
        Err("the password is empty: nothing was set".into())
    } else if chars < MIN_PASSWORD_CHARS {
        Err(format!(
            "the password is too short ({chars} characters): use at least {MIN_PASSWORD_CHARS}; nothing was set"
        ))
    } else if chars > MAX_PASSWORD_CHARS {
        Err(format!(
            "the password is too long ({chars} characters): use at most {MAX_PASSWORD_CHARS}; nothing was set"
        ))
    } else {
        Ok(())
    }
}

/// Asks twice on the terminal with echo off, so a typo cannot lock the
/// technician out and nobody reads the password over their shoulder.
fn read_interactively() -> Result<String, String> {
    let echo_off = set_echo(false);
    let result = (|| {
        let mut stdin = io::stdin().lock();
        prompt("New admin password: ");
        let first = read_line(&mut stdin)?;
        if echo_off {
            eprintln!();
        }
        check_password(&first)?;
        prompt("Same password again: ");
        let second = read_line(&mut stdin)?;
        if echo_off {
            eprintln!();
        }
        if first == second {
            Ok(first)
        } else {
            Err("the two passwords differ: nothing was set".into())
        }
    })();
    if echo_off {
        set_echo(true);
    }
    result
}

fn prompt(text: &str) {
    eprint!("{text}");
    let _ = io::stderr().flush();
}

/// Switches terminal echo with `stty` (present on every system we run on,
/// BusyBox included); returns whether it worked. Without it the password
/// is visible while typed, which the technician is told.
fn set_echo(on: bool) -> bool {
    let ok = Command::new("stty")
        .arg(if on { "echo" } else { "-echo" })
        .stdin(Stdio::inherit())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok && !on {
        eprintln!("(cannot hide what you type: the password will be visible)");
    }
    ok
}

/// Writes `hash` to `data_dir/admin.hash` with mode 0600, atomically, and
/// returns the file's path.
pub fn write_hash(data_dir: &Path, hash: &str) -> Result<PathBuf, String> {
    fs::create_dir_all(data_dir).map_err(|e| {
        format!(
            "cannot create the data directory {}: {e}",
            data_dir.display()
        )
    })?;
    let path = crate::config::admin_hash_path(data_dir);
    let temporary = data_dir.join(format!(".admin.hash.{}.tmp", std::process::id()));
    let written = (|| -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(hash.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        fs::rename(&temporary, &path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temporary);
        return Err(format!("cannot write {}: {e}", path.display()));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn reads_one_line_without_its_ending() {
        let mut input = Cursor::new("correct horse\r\nsecond line\n");
        assert_eq!(read_line(&mut input).unwrap(), "correct horse");
        let mut input = Cursor::new("no newline at all");
        assert_eq!(read_line(&mut input).unwrap(), "no newline at all");
        let err = read_line(&mut Cursor::new("")).unwrap_err();
        assert!(err.contains("no password on stdin"), "{err}");
    }

    #[test]
    fn refuses_empty_short_and_absurd_passwords() {
        for empty in ["", "   "] {
            let err = check_password(empty).unwrap_err();
            assert!(err.contains("empty"), "{err}");
        }
        let err = check_password("1234567").unwrap_err();
        assert!(err.contains("too short (7 characters)"), "{err}");
        assert!(err.contains("at least 8"), "{err}");
        // Characters, not bytes: seven accented letters are still seven.
        assert!(check_password("ééééééé").is_err());
        assert!(check_password("12345678").is_ok());
        let err = check_password(&"x".repeat(MAX_PASSWORD_CHARS + 1)).unwrap_err();
        assert!(err.contains("too long"), "{err}");
    }

    #[test]
    fn writes_a_private_hash_that_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("not-yet-created");
        let hash = web_ui::hash_password("correct horse battery").unwrap();
        let path = write_hash(&data_dir, &hash).unwrap();
        assert_eq!(path, data_dir.join("admin.hash"));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let stored = fs::read_to_string(&path).unwrap();
        assert_eq!(stored.trim(), hash);
        assert!(!stored.contains("correct horse"));
        assert_eq!(
            web_ui::auth::password::verify_password("correct horse battery", stored.trim()),
            web_ui::auth::password::Verdict::Match
        );

        // Setting it again replaces the hash and leaves no temporary behind.
        let second = web_ui::hash_password("another password").unwrap();
        write_hash(&data_dir, &second).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap().trim(), second);
        let names: Vec<_> = fs::read_dir(&data_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("admin.hash")]);
    }
}
