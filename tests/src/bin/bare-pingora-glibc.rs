//! `bare-pingora-glibc LISTEN UPSTREAM [THREADS]`: the floor of `scripts/bench` ([`e2e::bare`])
//! with the system allocator, Pingora's default.

fn main() -> std::process::ExitCode {
    e2e::bare::main()
}
