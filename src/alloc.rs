//! The global allocator: mimalloc, called the way its fast paths want.
//!
//! The `mimalloc` crate's wrapper sends every allocation through `mi_malloc_aligned`, whose fast
//! path only covers blocks up to 1 KiB; larger ones (the boxed per-request exchange future is
//! ~1.3 KiB) took the generic path, ~450 instructions per request under callgrind. Layouts
//! that need no more than word alignment, which every mimalloc block has, go to `mi_malloc`.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// Every mimalloc block is at least word aligned.
const WORD: usize = std::mem::align_of::<usize>();

pub struct MiMalloc;

// SAFETY: each method forwards to the matching mimalloc function, which returns memory of at
// least `layout.size()` bytes aligned to `layout.align()` (word alignment is guaranteed by
// mi_malloc; larger alignments use the aligned variants), or null on failure.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= WORD {
            mi::mi_malloc(layout.size()) as *mut u8
        } else {
            mi::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= WORD {
            mi::mi_zalloc(layout.size()) as *mut u8
        } else {
            mi::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi::mi_free(ptr as *mut c_void);
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= WORD {
            mi::mi_realloc(ptr as *mut c_void, new_size) as *mut u8
        } else {
            mi::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8
        }
    }
}
