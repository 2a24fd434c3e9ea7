fn main() -> std::process::ExitCode {
    seed_gateway::cli::main()
}
