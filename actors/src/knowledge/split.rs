//! Chunking with the `text-splitter` crate: Markdown along its structure (sections, then
//! paragraphs, then sentences), text along paragraphs and sentences. Chunks overlap a little so
//! a sentence cut at a boundary is still whole in one of them. Sizes are in characters, chosen
//! so a chunk stays within the embedding model's 256 tokens.

use text_splitter::{ChunkConfig, MarkdownSplitter, TextSplitter};

use super::FileKind;

/// Chunk size range in characters.
const MIN_CHARS: usize = 300;
const MAX_CHARS: usize = 900;
const OVERLAP_CHARS: usize = 120;

fn config() -> ChunkConfig<text_splitter::Characters> {
    ChunkConfig::new(MIN_CHARS..MAX_CHARS)
        .with_overlap(OVERLAP_CHARS)
        .expect("the overlap is smaller than the chunk size")
}

/// The chunks of a document's text, in order, none blank.
pub fn split(kind: FileKind, text: &str) -> Vec<String> {
    let chunks: Vec<&str> = match kind {
        FileKind::Markdown => MarkdownSplitter::new(config()).chunks(text).collect(),
        FileKind::Text | FileKind::Pdf => TextSplitter::new(config()).chunks(text).collect(),
    };
    chunks
        .into_iter()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_bounded_and_cover_the_text() {
        let para = "The nginx pods restart when the liveness probe fails three times. ";
        let text = format!(
            "# Nginx\n\n{}\n\n## Disk\n\n{}",
            para.repeat(30),
            "Disks fill up. ".repeat(80)
        );
        let chunks = split(FileKind::Markdown, &text);
        assert!(chunks.len() > 3);
        assert!(chunks.iter().all(|c| c.chars().count() <= MAX_CHARS));
        assert!(chunks.iter().any(|c| c.contains("liveness probe")));
        assert!(chunks.iter().any(|c| c.contains("Disks fill up")));
        assert_eq!(split(FileKind::Text, "short"), vec!["short"]);
    }
}
