//! Command-line entry point; all wiring lives in [`tikv_health_exporter::cli`].

fn main() {
    tune_malloc();
    std::process::exit(tikv_health_exporter::cli::main());
}

/// glibc's allocator, left to its defaults, holds on to memory it no longer uses: it raises
/// its mmap threshold each time a large block is freed, so the next multi-megabyte render or
/// PD/Prometheus reply is carved from the heap and stays there once freed, and it keeps one
/// arena per thread that allocated. At 1000 stores that doubled the resident set. A fixed
/// threshold gives every block of 128 KiB and more back to the kernel when it is freed; two
/// arenas are enough for a process that spends its time waiting on the network. A setting the
/// environment makes (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`,
/// read by glibc itself) is left as it is.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc() {
    let unset = |var: &str| std::env::var_os(var).is_none();
    // SAFETY: `mallopt` only sets allocator parameters; it is called before any other thread
    // exists, and an unknown parameter or value is refused (returns 0), not undefined.
    unsafe {
        if unset("MALLOC_ARENA_MAX") {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
        if unset("MALLOC_MMAP_THRESHOLD_") {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        }
        if unset("MALLOC_TRIM_THRESHOLD_") {
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1024 * 1024);
        }
    }
}

/// Other C libraries (musl) and systems keep their allocator's defaults.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}
