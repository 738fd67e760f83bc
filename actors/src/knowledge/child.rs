//! PDF text extraction in a child process, under a time and a memory limit. A crafted PDF (a
//! decompression bomb, a parser trap) then fails its own document with a reason, and the node
//! and every other document go on: the child is killed at its deadline, and the kernel stops it
//! at its address-space limit. The child is this binary (`aurora kb-extract pdf`), reading the
//! file on stdin and writing the text on stdout, with an empty environment.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::extract::{extract, FileKind};
use super::KbError;

/// The most text one document may yield.
const MAX_TEXT_BYTES: u64 = 64 * 1024 * 1024;
/// What of the child's error output is kept (its message).
const MAX_ERR_BYTES: u64 = 4 * 1024;
/// The exit status of an extraction that refused the file (its reason on stderr).
pub const REFUSED: i32 = 3;
/// The exit status of an extraction that needed more memory than its limit allows.
pub const OUT_OF_MEMORY: i32 = 4;
/// What the child writes before the text: proof that the program is an extractor at all (a
/// misconfigured program that happens to exit 0 must not have its output taken as text).
const HEADER: &[u8] = b"aurora-kb-extract/1\n";

#[derive(Clone, Debug)]
pub struct Extractor {
    /// The program run as `<program> kb-extract <kind>`; `None`: PDFs cannot be read here.
    pub program: Option<PathBuf>,
    pub timeout: Duration,
    pub memory_bytes: u64,
}

impl Extractor {
    /// The text of a file. Text formats are read in process (a UTF-8 check, bounded by the
    /// upload size); PDFs in the child.
    pub async fn text(&self, kind: FileKind, bytes: Vec<u8>) -> Result<String, KbError> {
        match kind {
            FileKind::Markdown | FileKind::Text => {
                tokio::task::spawn_blocking(move || extract(kind, &bytes))
                    .await
                    .map_err(|e| KbError::Unreadable(format!("text extraction failed: {e}")))?
            }
            FileKind::Pdf => self.in_child("pdf", bytes).await,
        }
    }

    async fn in_child(&self, kind: &str, bytes: Vec<u8>) -> Result<String, KbError> {
        let program = self.program.as_ref().ok_or_else(|| {
            KbError::Unreadable("PDF extraction is not available on this node".into())
        })?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(["kb-extract", kind])
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let memory = self.memory_bytes;
        let cpu = self.timeout.as_secs() + 1;
        // SAFETY: between fork and exec only async-signal-safe calls (setrlimit).
        unsafe {
            cmd.pre_exec(move || {
                let limit = |resource, value: u64| {
                    let rl = libc::rlimit {
                        rlim_cur: value,
                        rlim_max: value,
                    };
                    if libc::setrlimit(resource, &rl) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                };
                limit(libc::RLIMIT_AS, memory)?;
                limit(libc::RLIMIT_CPU, cpu)?;
                limit(libc::RLIMIT_CORE, 0)?;
                // Its own session (no terminal, its own process group), and no way to gain
                // privileges through an exec.
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| {
            tracing::error!(program = %program.display(), error = %e, "cannot start the extractor");
            KbError::Unreadable("text extraction could not start".into())
        })?;
        let mut stdin = child.stdin.take().expect("piped");
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let feed = tokio::spawn(async move {
            // A child that dies early closes its end: nothing more to write.
            let _ = stdin.write_all(&bytes).await;
        });
        let work = async {
            let mut text = Vec::new();
            let mut err = Vec::new();
            let mut out = (&mut stdout).take(MAX_TEXT_BYTES + HEADER.len() as u64 + 1);
            let mut errs = (&mut stderr).take(MAX_ERR_BYTES);
            let (read_out, read_err) =
                tokio::join!(out.read_to_end(&mut text), errs.read_to_end(&mut err));
            read_out.map_err(|e| KbError::Unreadable(format!("text extraction failed: {e}")))?;
            let _ = read_err;
            // Past either cap the child would block on a full pipe: end it now.
            if text.len() as u64 > MAX_TEXT_BYTES + HEADER.len() as u64
                || err.len() as u64 >= MAX_ERR_BYTES
            {
                let _ = child.start_kill();
            }
            let status = child
                .wait()
                .await
                .map_err(|e| KbError::Unreadable(format!("text extraction failed: {e}")))?;
            Ok::<_, KbError>((status, text, err))
        };
        let outcome = tokio::time::timeout(self.timeout, work).await;
        feed.abort();
        let (status, text, err) = match outcome {
            Ok(r) => r?,
            Err(_) => {
                // kill_on_drop ends the child with the future that owned it.
                return Err(KbError::Unreadable(format!(
                    "reading the file took longer than {} s",
                    self.timeout.as_secs()
                )));
            }
        };
        if text.len() as u64 > MAX_TEXT_BYTES + HEADER.len() as u64 {
            return Err(KbError::Unreadable(format!(
                "the file has more than {} MiB of text",
                MAX_TEXT_BYTES / (1024 * 1024)
            )));
        }
        if status.success() {
            let Some(text) = text.strip_prefix(HEADER) else {
                tracing::error!(program = %program.display(), "the extractor is not an aurora binary (AURORA_KB_EXTRACTOR)");
                return Err(KbError::Unreadable(
                    "text extraction is misconfigured on this node".into(),
                ));
            };
            let text = text.to_vec();
            if text.len() as u64 > MAX_TEXT_BYTES {
                return Err(KbError::Unreadable(format!(
                    "the file has more than {} MiB of text",
                    MAX_TEXT_BYTES / (1024 * 1024)
                )));
            }
            return String::from_utf8(text)
                .map_err(|_| KbError::Unreadable("the extracted text is not UTF-8".into()));
        }
        let mib = self.memory_bytes / (1024 * 1024);
        Err(KbError::Unreadable(
            match (status.code(), status.signal()) {
                (Some(REFUSED), _) => {
                    let msg = String::from_utf8_lossy(&err).trim().to_string();
                    if msg.is_empty() {
                        "cannot read the file".to_string()
                    } else {
                        msg
                    }
                }
                (_, Some(libc::SIGXCPU)) | (_, Some(libc::SIGKILL)) => format!(
                    "reading the file took longer than {} s",
                    self.timeout.as_secs()
                ),
                // An allocation the address-space limit refused aborts the child, or the child
                // saw one refused and says so.
                _ => format!("reading the file needs more than {mib} MiB"),
            },
        ))
    }
}

/// The child's side: reads the file on stdin, writes its text on stdout. Exit 0 with the text,
/// or [`REFUSED`] with the reason on stderr; [`OUT_OF_MEMORY`] when an allocation was refused
/// on the way (`alloc_refused`, from the binary's allocator): whatever the parser made of it,
/// the file needs more memory than the limit allows.
pub fn child_main(kind: &str, alloc_refused: fn() -> bool) -> i32 {
    use std::io::{Read, Write};
    // A parser panic is reported as one plain line (below), never with the build's paths.
    std::panic::set_hook(Box::new(|_| {}));
    let kind = match kind {
        "pdf" => FileKind::Pdf,
        "md" => FileKind::Markdown,
        "txt" => FileKind::Text,
        other => {
            eprintln!("unknown kind {other}");
            return 2;
        }
    };
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut bytes) {
        eprintln!("cannot read the file: {e}");
        return REFUSED;
    }
    let extracted = extract(kind, &bytes);
    if alloc_refused() {
        return OUT_OF_MEMORY;
    }
    match extracted {
        Ok(text) => {
            let mut out = std::io::stdout().lock();
            let written = out
                .write_all(HEADER)
                .and_then(|_| out.write_all(text.as_bytes()))
                .and_then(|_| out.flush());
            if written.is_err() {
                return 1;
            }
            0
        }
        Err(e) => {
            eprintln!("{e}");
            REFUSED
        }
    }
}
