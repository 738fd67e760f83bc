//! What an uploaded file is, and its plain text: Markdown and text as UTF-8, PDF through the
//! `pdf-extract` crate. Text comes back with at least one non-blank character or an error that
//! says why not (the document's failure reason).

use super::KbError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Markdown,
    Text,
    Pdf,
}

impl FileKind {
    /// By extension, case-insensitive; anything else is refused (415).
    pub fn from_filename(name: &str) -> Option<FileKind> {
        let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "md" | "markdown" => Some(FileKind::Markdown),
            "txt" | "text" => Some(FileKind::Text),
            "pdf" => Some(FileKind::Pdf),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            FileKind::Markdown => "text/markdown",
            FileKind::Text => "text/plain",
            FileKind::Pdf => "application/pdf",
        }
    }

    pub fn from_content_type(ct: &str) -> Option<FileKind> {
        match ct {
            "text/markdown" => Some(FileKind::Markdown),
            "text/plain" => Some(FileKind::Text),
            "application/pdf" => Some(FileKind::Pdf),
            _ => None,
        }
    }
}

/// The text of a file. CPU-bound for PDFs: call it on the blocking pool.
pub fn extract(kind: FileKind, bytes: &[u8]) -> Result<String, KbError> {
    if bytes.is_empty() {
        return Err(KbError::Unreadable("the file is empty".into()));
    }
    let text = match kind {
        FileKind::Markdown | FileKind::Text => std::str::from_utf8(bytes)
            .map_err(|e| KbError::Unreadable(format!("the file is not UTF-8 text: {e}")))?
            .trim_start_matches('\u{feff}')
            .to_string(),
        FileKind::Pdf => {
            if !bytes.starts_with(b"%PDF-") {
                return Err(KbError::Unreadable("the file is not a PDF".into()));
            }
            // pdf-extract panics on some malformed files: contain that here.
            let owned = bytes.to_vec();
            match std::panic::catch_unwind(move || pdf_extract::extract_text_from_mem(&owned)) {
                Ok(Ok(text)) => text,
                Ok(Err(e)) => return Err(KbError::Unreadable(format!("cannot read the PDF: {e}"))),
                Err(_) => return Err(KbError::Unreadable("cannot read the PDF".into())),
            }
        }
    };
    if text.trim().is_empty() {
        return Err(KbError::Unreadable("the file has no text".into()));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_extensions() {
        assert_eq!(
            FileKind::from_filename("Runbook.MD"),
            Some(FileKind::Markdown)
        );
        assert_eq!(FileKind::from_filename("notes.txt"), Some(FileKind::Text));
        assert_eq!(FileKind::from_filename("a.b.pdf"), Some(FileKind::Pdf));
        assert_eq!(FileKind::from_filename("image.png"), None);
        assert_eq!(FileKind::from_filename("README"), None);
    }

    #[test]
    fn unreadable_files_say_why() {
        let err = |k, b: &[u8]| extract(k, b).unwrap_err().to_string();
        assert!(err(FileKind::Text, b"").contains("empty"));
        assert!(err(FileKind::Text, b" \n\t ").contains("no text"));
        assert!(err(FileKind::Markdown, &[0xff, 0xfe, 0x00]).contains("UTF-8"));
        assert!(err(FileKind::Pdf, b"hello").contains("not a PDF"));
        assert!(err(FileKind::Pdf, b"%PDF-1.4 garbage").contains("PDF"));
        assert_eq!(
            extract(FileKind::Text, "\u{feff}hi".as_bytes()).unwrap(),
            "hi"
        );
    }
}
