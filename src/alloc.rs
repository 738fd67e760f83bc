//! The node's allocator: mimalloc, noting whether an allocation was ever refused.
//!
//! Why: the PDF extraction child runs under an address-space limit (a decompression bomb must
//! not cost the node its memory). Where a parser's decompressor reserves fallibly, a refused
//! allocation does not abort the child: the stream is dropped and the file reads as having no
//! text, which would tell the user the wrong thing. The child asks [`refused`] before it
//! reports, and says that the file needs more memory than allowed instead.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, Ordering};

static REFUSED: AtomicBool = AtomicBool::new(false);

/// Whether an allocation of this process was ever refused.
pub fn refused() -> bool {
    REFUSED.load(Ordering::Relaxed)
}

pub struct Noting;

fn noted(p: *mut u8) -> *mut u8 {
    if p.is_null() {
        REFUSED.store(true, Ordering::Relaxed);
    }
    p
}

// SAFETY: every call goes to mimalloc unchanged; only a null answer is noted.
unsafe impl GlobalAlloc for Noting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        noted(unsafe { mimalloc::MiMalloc.alloc(layout) })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        noted(unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) })
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        noted(unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) })
    }
}
