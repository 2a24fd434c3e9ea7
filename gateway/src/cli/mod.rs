//! The subcommands of the `seed-gateway` binary (in progress).

pub fn main() -> std::process::ExitCode {
    std::process::ExitCode::FAILURE
}
