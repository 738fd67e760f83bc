//! Knowledge-base extraction under limits, and per-org caps: a decompression bomb and a hung
//! extraction fail only their own document; an org cannot keep or process more documents than
//! its caps allow.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use common::kb::{model_dir, pdf, settled, upload, upload_ok};
use common::{assert_error, Backend, TestNode};
use lopdf::{dictionary, Document, Object, Stream};
use reqwest::StatusCode;

/// A PDF whose one content stream inflates to `mb` MiB (spaces, then a line of text): a few
/// hundred KiB on the wire.
fn bomb(mb: usize) -> Vec<u8> {
    let mut content = vec![b' '; mb * 1024 * 1024];
    content.extend_from_slice(b"\nBT /F1 11 Tf 50 780 Td (boom) Tj ET\n");
    let mut stream = Stream::new(dictionary! {}, content);
    stream.compress().unwrap();
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica",
    });
    let content_id = doc.add_object(stream);
    let page_id = doc.add_object(dictionary! {
        "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
    });
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => vec![page_id.into()],
            "Count" => 1,
            "Resources" => dictionary! { "Font" => dictionary! { "F1" => font_id } },
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        }),
    );
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog_id);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

/// Peak resident memory of the largest child this process has waited for, in MiB.
fn children_peak_mib() -> u64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) },
        0
    );
    usage.ru_maxrss as u64 / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decompression_bomb_fails_only_its_own_document() {
    let bomb = bomb(400);
    assert!(bomb.len() < 4 * 1024 * 1024, "{} bytes", bomb.len());
    // Without a limit, reading it takes hundreds of MiB: shown with the extractor itself, run
    // with no bound (in the node's own process, that memory would be the node's).
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_aurora"))
        .args(["kb-extract", "pdf"])
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&bomb).unwrap();
    child.wait().unwrap();
    let unbounded = children_peak_mib();
    assert!(unbounded > 300, "the bomb took only {unbounded} MiB");

    let model = model_dir();
    let t = TestNode::start_with(
        Backend::Sqlite,
        &[
            ("EMBEDDING_MODEL_DIR", model.as_str()),
            ("AURORA_KB_EXTRACT_MEMORY_MB", "256"),
        ],
    )
    .await;
    let token = t.register("kb@acme.io", "Acme").await;
    let bad = upload_ok(&t, &token, "bomb.pdf", bomb).await;
    let good = upload_ok(
        &t,
        &token,
        "runbook.pdf",
        pdf(&["Restart the payments service with kubectl rollout restart."]),
    )
    .await;
    let bad = settled(&t, &token, &bad).await;
    assert_eq!(bad["status"], "failed", "{bad}");
    assert!(
        bad["error"].as_str().unwrap().contains("more than 256 MiB"),
        "{bad}"
    );
    let good = settled(&t, &token, &good).await;
    assert_eq!(good["status"], "ready", "{good}");
    assert_eq!(t.get("/health/liveness", None).await.0, StatusCode::OK);
    t.stop().await;
}

/// An extractor that never answers.
fn hanging_extractor(dir: &std::path::Path) -> String {
    let path = dir.join("hang.sh");
    std::fs::write(&path, "#!/bin/sh\nsleep 30\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_extraction_is_cut_at_its_deadline_and_caps_hold() {
    let dir = tempfile::tempdir().unwrap();
    let hang = hanging_extractor(dir.path());
    let model = model_dir();
    let t = TestNode::start_with(
        Backend::Sqlite,
        &[
            ("EMBEDDING_MODEL_DIR", model.as_str()),
            ("AURORA_KB_EXTRACTOR", hang.as_str()),
            ("AURORA_KB_EXTRACT_SECS", "2"),
            ("AURORA_KB_MAX_INGESTIONS", "1"),
            ("AURORA_KB_MAX_DOCUMENTS", "2"),
        ],
    )
    .await;
    let token = t.register("kb@acme.io", "Acme").await;
    let stuck = upload_ok(&t, &token, "slow.pdf", pdf(&["never read"])).await;
    // One document in flight is the org's cap: the next waits its turn.
    let before = t.row_counts().await;
    let (status, body) = upload(&t, &token, "next.md", b"# Next\nlater".to_vec()).await;
    assert_error(
        status,
        &body,
        StatusCode::TOO_MANY_REQUESTS,
        "LIMIT_REACHED",
    );
    assert_eq!(
        t.row_counts().await,
        before,
        "a refused upload wrote nothing"
    );

    let stuck = settled(&t, &token, &stuck).await;
    assert_eq!(stuck["status"], "failed", "{stuck}");
    assert!(
        stuck["error"].as_str().unwrap().contains("longer than 2 s"),
        "{stuck}"
    );
    // Markdown is read in process: unaffected by the broken extractor.
    let md = upload_ok(
        &t,
        &token,
        "ok.md",
        b"# Disk full\nClean /var/log.".to_vec(),
    )
    .await;
    assert_eq!(settled(&t, &token, &md).await["status"], "ready");
    // Two documents kept (one failed, one ready) is the org's other cap.
    let (status, body) = upload(&t, &token, "third.md", b"# Third".to_vec()).await;
    assert_error(status, &body, StatusCode::CONFLICT, "CONFLICT");
    // Another org has caps of its own.
    let other = t.register("kb@globex.io", "Globex").await;
    let theirs = upload_ok(&t, &other, "theirs.md", b"# Theirs\ntext".to_vec()).await;
    assert_eq!(settled(&t, &other, &theirs).await["status"], "ready");
    t.stop().await;
}
