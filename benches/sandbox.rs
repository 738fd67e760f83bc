//! Sandbox cost per tool call: spawn to exit of `/usr/bin/true` through the node's tool runner
//! (`CloudExec::run_with`: session directory, bwrap, network listeners when root, output
//! capture), against the same program started plainly with tokio. CALLS runs each (default
//! 200), interleaved, after a warm-up; prints p50 and p99 in milliseconds.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use aurora_actors::tools::cloud_exec::{Call, CloudExec};
use aurora_actors::tools::sandbox::{Sandbox, SandboxConfig};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Built and listed as a test target too (`--all-targets`): run only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let calls: usize = std::env::var("CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )?;
    let sandbox = Sandbox::new(SandboxConfig::default());
    let status = sandbox.status().clone();
    anyhow::ensure!(status.available, "no sandbox here: {:?}", status.error);
    let exec = CloudExec {
        allowed: vec!["true".into()],
        search_path: "/usr/bin:/bin".into(),
        workdir_root: dir.path().join("work"),
        timeout: Duration::from_secs(30),
        output_limit: 64 * 1024,
        grace: Duration::from_secs(5),
        sandbox,
    };
    let argv = vec!["true".to_string()];
    let call = Call::default();
    let (user, session) = ("0193a0a0-0000-7000-8000-00000000000a", "s1");
    for _ in 0..10 {
        exec.run_with(user, session, &argv, &call).await?;
    }
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    for _ in 0..calls {
        let t = Instant::now();
        let out = exec.run_with(user, session, &argv, &call).await?;
        anyhow::ensure!(out.exit_code == Some(0), "{}", out.output);
        inside.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let st = tokio::process::Command::new("/usr/bin/true")
            .current_dir(dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .output()
            .await?;
        anyhow::ensure!(st.status.success());
        outside.push(t.elapsed().as_secs_f64() * 1e3);
    }
    inside.sort_by(f64::total_cmp);
    outside.sort_by(f64::total_cmp);
    println!(
        "sandbox network={} calls={calls}\n  in the sandbox:  p50 {:.2} ms  p99 {:.2} ms\n  plain spawn:     p50 {:.2} ms  p99 {:.2} ms",
        status.network,
        percentile(&inside, 0.5),
        percentile(&inside, 0.99),
        percentile(&outside, 0.5),
        percentile(&outside, 0.99),
    );
    Ok(())
}
