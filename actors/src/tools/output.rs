use tokio::io::{AsyncRead, AsyncReadExt};

/// What a tool run produced, already capped and redacted.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ToolOutput {
    pub output: String,
    pub exit_code: Option<i32>,
    pub truncated: bool,
    pub duration_ms: u64,
}

/// Reads a stream to its end, keeping at most `limit` bytes: a chatty command must neither
/// block on a full pipe nor fill the node's memory.
pub struct OutputCap {
    pub limit: usize,
}

impl OutputCap {
    pub async fn read(&self, mut from: impl AsyncRead + Unpin) -> std::io::Result<(Vec<u8>, bool)> {
        let mut kept = Vec::new();
        let mut truncated = false;
        let mut buf = [0u8; 8192];
        loop {
            let n = from.read(&mut buf).await?;
            if n == 0 {
                return Ok((kept, truncated));
            }
            let room = self.limit.saturating_sub(kept.len());
            if n > room {
                truncated = true;
            }
            kept.extend_from_slice(&buf[..n.min(room)]);
        }
    }
}
