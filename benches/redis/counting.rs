//! A counting allocator: off (one relaxed load per call) except around the heap accounting of
//! the cold-load child, where it sums requested bytes and what glibc really hands out.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering::Relaxed};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
/// Live bytes as requested by Rust.
static LIVE_REQUESTED: AtomicIsize = AtomicIsize::new(0);
/// Live bytes as glibc holds them: usable size plus the 8-byte chunk header.
static LIVE_HEAP: AtomicIsize = AtomicIsize::new(0);
static LIVE_ALLOCS: AtomicIsize = AtomicIsize::new(0);

#[cfg(all(target_os = "linux", target_env = "gnu"))]
unsafe extern "C" {
    fn malloc_usable_size(p: *mut std::ffi::c_void) -> usize;
    fn malloc_trim(pad: usize) -> i32;
}

/// Heap bytes a live allocation takes in glibc (usable size and chunk header).
fn heap_size(p: *mut u8, requested: usize) -> isize {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let _ = requested;
        // SAFETY: `p` is a live allocation from the system allocator (malloc family).
        (unsafe { malloc_usable_size(p.cast()) } + 8) as isize
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = p;
        requested as isize
    }
}

/// Returns free heap memory to the OS (glibc keeps it otherwise), so RSS shows live data.
pub(crate) fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it is safe to call at any time.
    unsafe {
        malloc_trim(0);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() && COUNTING.load(Relaxed) {
            LIVE_REQUESTED.fetch_add(l.size() as isize, Relaxed);
            LIVE_HEAP.fetch_add(heap_size(p, l.size()), Relaxed);
            LIVE_ALLOCS.fetch_add(1, Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() && COUNTING.load(Relaxed) {
            LIVE_REQUESTED.fetch_add(l.size() as isize, Relaxed);
            LIVE_HEAP.fetch_add(heap_size(p, l.size()), Relaxed);
            LIVE_ALLOCS.fetch_add(1, Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if COUNTING.load(Relaxed) {
            LIVE_REQUESTED.fetch_sub(l.size() as isize, Relaxed);
            LIVE_HEAP.fetch_sub(heap_size(p, l.size()), Relaxed);
            LIVE_ALLOCS.fetch_sub(1, Relaxed);
        }
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(p, l) }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let counting = COUNTING.load(Relaxed);
        let before = if counting { heap_size(p, l.size()) } else { 0 };
        // SAFETY: forwarded as is.
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() && counting {
            LIVE_REQUESTED.fetch_add(new as isize - l.size() as isize, Relaxed);
            LIVE_HEAP.fetch_add(heap_size(q, new) - before, Relaxed);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Live (requested bytes, heap bytes, allocations) since the last `count_start`.
pub(crate) fn count_start() {
    LIVE_REQUESTED.store(0, Relaxed);
    LIVE_HEAP.store(0, Relaxed);
    LIVE_ALLOCS.store(0, Relaxed);
    COUNTING.store(true, Relaxed);
}

pub(crate) fn count_stop() -> (f64, f64, f64) {
    COUNTING.store(false, Relaxed);
    (
        LIVE_REQUESTED.load(Relaxed) as f64,
        LIVE_HEAP.load(Relaxed) as f64,
        LIVE_ALLOCS.load(Relaxed) as f64,
    )
}
