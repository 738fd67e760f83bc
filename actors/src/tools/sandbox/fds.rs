//! What the `bwrap` child inherits: the file descriptors its options name (directories to bind,
//! files to copy in, the info and block pipes) at fixed numbers, and the resource limits.

use std::os::fd::{AsRawFd, OwnedFd};

use super::Limits;

/// The first descriptor number handed to bwrap; the i-th passed descriptor becomes `FIRST + i`.
const FIRST: i32 = 10;
/// Where descriptors are parked while being renumbered, above anything the child holds.
const PARK: i32 = 1000;

/// The number the i-th passed descriptor has in the child.
pub fn target(i: usize) -> i32 {
    FIRST + i as i32
}

/// Arranges for `fds` to reach the child as `target(0..)` and for the limits to be set in it.
pub fn pass(cmd: &mut tokio::process::Command, fds: &[OwnedFd], limits: Limits) {
    let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let rlimits = [
        (libc::RLIMIT_AS, limits.memory_bytes),
        (libc::RLIMIT_NPROC, limits.processes),
        (libc::RLIMIT_CPU, limits.cpu_secs),
        (libc::RLIMIT_FSIZE, limits.file_bytes),
        (libc::RLIMIT_NOFILE, limits.open_files),
        (libc::RLIMIT_CORE, 0),
    ];
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
    // system calls (fcntl, dup2, setrlimit) on values computed before the fork.
    unsafe {
        cmd.pre_exec(move || {
            // Park every descriptor high first, so renumbering one cannot close another that
            // already sits on a target number.
            let mut parked = Vec::with_capacity(raw.len());
            for fd in &raw {
                let p = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, PARK);
                if p < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                parked.push(p);
            }
            for (i, p) in parked.iter().enumerate() {
                // dup2 clears close-on-exec on the new number; the parked copy closes at exec.
                if libc::dup2(*p, FIRST + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (resource, value) in rlimits {
                let lim = libc::rlimit {
                    rlim_cur: value,
                    rlim_max: value,
                };
                if libc::setrlimit(resource, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}
