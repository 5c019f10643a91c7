//! The `s3tap` proxy binary; everything lives in [`s3tap::proxy`].

/// A long-running proxy frees as much as it allocates; glibc's malloc kept
/// the freed memory as fragmented arenas and the RSS crept up for as long
/// as the proxy ran (see BENCHMARKS.md, "Soak"). jemalloc gives freed pages
/// back. Library users keep their own allocator: this is set only in the
/// binary.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    s3tap::proxy::main()
}
