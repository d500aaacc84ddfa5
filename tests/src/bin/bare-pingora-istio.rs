//! `bare-pingora-istio LISTEN UPSTREAM [THREADS]`: the floor of `scripts/bench` with only the work
//! Istio's gateway does on every request ([`e2e::bare`]), with Pylon's allocator and its settings.

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    e2e::bare::main_istio()
}
