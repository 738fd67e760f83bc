//! The `bwrap` command line of one call: which namespaces, which mounts, which environment.
//! Directories are bound by path: bwrap, running as the sandbox user, resolves them before it
//! enters the sandbox, so they must be reachable by that user (`--bind-fd` would spare that,
//! but an unprivileged bwrap cannot open its own `/proc/self/fd` once it has switched users).
//! The path components above a session directory belong to the node, so the tool cannot swap
//! one for a symlink; inside the sandbox none of them is visible.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Seek, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::{fds, GrantFile, Limits, Spec};

/// Where the session directory appears inside the sandbox.
pub const SANDBOX_WORKDIR: &str = "/work";
/// The sandbox's private home (memory-backed, new for every call).
const HOME: &str = "/home/sandbox";
/// Where granted files (kubeconfig, keys) appear, mode 0600.
const GRANTS: &str = "/run/aurora";

/// System directories bound read-only as they are on the host.
const SYSTEM_DIRS: &[&str] = &["/usr", "/opt"];
/// Top-level names that are symlinks into /usr on a merged-/usr system, or directories.
const SYSTEM_LINKS: &[&str] = &["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];
/// The parts of /etc a CLI needs (name resolution, certificates, time zone); never the whole
/// of /etc (shadow, the node's own configuration).
const ETC_FILES: &[&str] = &[
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/nsswitch.conf",
    "/etc/protocols",
    "/etc/services",
    "/etc/localtime",
    "/etc/mime.types",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
];

/// Paths the binds must never cover: a tool path or read-only path that is one of these (or a
/// parent of one) would show the host's root to the tool.
fn too_wide(p: &Path) -> bool {
    p == Path::new("/") || p.parent() == Some(Path::new("/")) && !is_system(p)
}

fn is_system(p: &Path) -> bool {
    SYSTEM_DIRS
        .iter()
        .chain(SYSTEM_LINKS)
        .any(|s| p.starts_with(s))
}

pub struct Plan {
    pub args: Vec<OsString>,
    /// Descriptors the options refer to, in order (`fds::target(i)` in the child).
    pub fds: Vec<OwnedFd>,
}

impl Plan {
    pub fn build(
        spec: &Spec<'_>,
        ro_paths: &[PathBuf],
        limits: &Limits,
        network: bool,
        inner_uid: u32,
        host_uid: u32,
    ) -> std::io::Result<Plan> {
        let mut plan = Plan {
            args: Vec::new(),
            fds: Vec::new(),
        };
        plan.flags(&[
            "--unshare-user",
            "--unshare-ipc",
            "--unshare-pid",
            "--unshare-net",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--clearenv",
        ]);
        plan.flags(&["--hostname", "sandbox"]);
        for dir in SYSTEM_DIRS {
            plan.flags(&["--ro-bind-try", dir, dir]);
        }
        for link in SYSTEM_LINKS {
            let p = Path::new(link);
            match std::fs::read_link(p) {
                Ok(target) => {
                    plan.args.push("--symlink".into());
                    plan.args.push(target.into_os_string());
                    plan.args.push(p.into());
                }
                Err(_) if p.is_dir() => plan.flags(&["--ro-bind", link, link]),
                Err(_) => {}
            }
        }
        for f in ETC_FILES {
            plan.flags(&["--ro-bind-try", f, f]);
        }
        let size = limits.tmpfs_bytes.to_string();
        plan.flags(&["--proc", "/proc", "--dev", "/dev"]);
        plan.flags(&["--size", &size, "--tmpfs", "/tmp"]);
        plan.flags(&["--size", &size, "--tmpfs", HOME]);
        plan.flags(&["--size", "8388608", "--tmpfs", GRANTS]);
        // A passwd entry for the sandbox user: some CLIs look their user up.
        let (passwd_uid, passwd_gid) = (inner_uid, inner_uid);
        let passwd =
            format!("sandbox:x:{passwd_uid}:{passwd_gid}:sandbox:{HOME}:/usr/sbin/nologin\n");
        plan.data(
            "--ro-bind-data",
            "/etc/passwd",
            passwd.as_bytes(),
            Some("0644"),
        )?;
        plan.data(
            "--ro-bind-data",
            "/etc/group",
            format!("sandbox:x:{passwd_gid}:\n").as_bytes(),
            Some("0644"),
        )?;

        // The tool search path and the configured read-only paths, each at its own path.
        let mut path_inside: Vec<String> = Vec::new();
        for dir in std::env::split_paths(spec.search_path) {
            if !dir.is_absolute() || !dir.is_dir() {
                continue;
            }
            // Never a directory that holds the sessions or sits beside them (the data
            // directory, in the default layout): a PATH entry like that would show the node's
            // files to the tool, read-only or not.
            let sessions_home = spec.workdir.ancestors().nth(3);
            if spec.workdir.starts_with(&dir) || sessions_home.is_some_and(|h| dir.starts_with(h)) {
                continue;
            }
            if !is_system(&dir) && !too_wide(&dir) {
                if !reachable(&dir, host_uid) {
                    // The sandbox user cannot reach it: nothing of it can be run there.
                    continue;
                }
                plan.bind_dir(&dir, false);
            }
            path_inside.push(dir.display().to_string());
        }
        for p in ro_paths {
            if !is_system(p) && !too_wide(p) {
                if !reachable(p, host_uid) {
                    return Err(unreachable(p, host_uid));
                }
                plan.bind_dir(p, false);
            }
        }
        for extra in ["/usr/local/bin", "/usr/bin", "/bin"] {
            if !path_inside.iter().any(|p| p == extra) {
                path_inside.push(extra.into());
            }
        }

        // The session directory, the only writable host directory.
        if !reachable(spec.workdir, host_uid) {
            return Err(unreachable(spec.workdir, host_uid));
        }
        plan.args.push("--bind".into());
        plan.args.push(spec.workdir.into());
        plan.args.push(SANDBOX_WORKDIR.into());
        plan.flags(&["--chdir", SANDBOX_WORKDIR]);

        // Granted files, then the environment.
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), path_inside.join(":")),
            ("HOME".into(), HOME.into()),
            ("USER".into(), "sandbox".into()),
            ("LOGNAME".into(), "sandbox".into()),
            ("TMPDIR".into(), "/tmp".into()),
            ("LANG".into(), "C.UTF-8".into()),
            ("LC_ALL".into(), "C.UTF-8".into()),
            // The node supplies credentials; never ask an instance metadata service for its own.
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            ("AWS_CONFIG_FILE".into(), format!("{HOME}/.aws/config")),
            ("HELM_PLUGINS".into(), "/nonexistent-helm-plugins".into()),
            ("CHECKPOINT_DISABLE".into(), "1".into()),
            ("TF_IN_AUTOMATION".into(), "1".into()),
        ];
        if network {
            let proxy = format!("http://127.0.0.1:{}", super::net::PROXY_PORT);
            for k in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] {
                env.push((k.into(), proxy.clone()));
            }
            for k in ["NO_PROXY", "no_proxy"] {
                env.push((k.into(), "localhost,127.0.0.1,::1".into()));
            }
        }
        for f in spec.grant.files.iter().chain(spec.files.iter()) {
            plan.grant_file(f, &mut env)?;
        }
        env.extend(spec.env.iter().cloned());
        env.extend(spec.grant.env.iter().cloned());
        for (k, v) in env {
            plan.args.push("--setenv".into());
            plan.args.push(k.into());
            plan.args.push(v.into());
        }
        Ok(plan)
    }

    fn flags(&mut self, f: &[&str]) {
        self.args.extend(f.iter().map(OsString::from));
    }

    /// Binds a host directory at the same path.
    fn bind_dir(&mut self, dir: &Path, writable: bool) {
        self.args
            .push(if writable { "--bind" } else { "--ro-bind" }.into());
        self.args.push(dir.into());
        self.args.push(dir.into());
    }

    /// A file whose contents bwrap copies in from a descriptor: an unlinked temporary file, so
    /// nothing of it stays on the host's disk.
    fn data(
        &mut self,
        op: &str,
        dest: &str,
        contents: &[u8],
        perms: Option<&str>,
    ) -> std::io::Result<()> {
        let mut file: File = tempfile::tempfile()?;
        file.write_all(contents)?;
        file.rewind()?;
        self.fds.push(OwnedFd::from(file));
        if let Some(p) = perms {
            self.flags(&["--perms", p]);
        }
        self.args.push(op.into());
        self.args
            .push(fds::target(self.fds.len() - 1).to_string().into());
        self.args.push(dest.into());
        Ok(())
    }

    fn grant_file(
        &mut self,
        f: &GrantFile,
        env: &mut Vec<(String, String)>,
    ) -> std::io::Result<()> {
        let safe = !f.name.is_empty()
            && f.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            && !f.name.starts_with('.');
        if !safe {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "bad granted file name",
            ));
        }
        let dest = format!("{GRANTS}/{}", f.name);
        self.data("--ro-bind-data", &dest, &f.contents, Some("0600"))?;
        if let Some(var) = &f.env {
            env.push((var.clone(), dest));
        }
        Ok(())
    }
}

/// Whether `uid` can reach `dir`: every directory on the way searchable by it (by owner or
/// other bits; groups are not considered, the sandbox user has none), `dir` itself readable.
fn reachable(dir: &Path, uid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let allowed = |m: &std::fs::Metadata, owner_bits: u32, other_bits: u32| {
        if uid == 0 {
            return true;
        }
        if m.uid() == uid {
            m.mode() & owner_bits == owner_bits
        } else {
            m.mode() & other_bits == other_bits
        }
    };
    let Ok(meta) = std::fs::metadata(dir) else {
        return false;
    };
    if !meta.is_dir() || !allowed(&meta, 0o500, 0o005) {
        return false;
    }
    dir.ancestors().skip(1).all(|a| {
        std::fs::metadata(a)
            .map(|m| allowed(&m, 0o100, 0o001))
            .unwrap_or(false)
    })
}

fn unreachable(dir: &Path, uid: u32) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        format!(
            "the sandbox user (uid {uid}) cannot reach {}: its parent directories must be searchable (chmod o+x)",
            dir.display()
        ),
    )
}
