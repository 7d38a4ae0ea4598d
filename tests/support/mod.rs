//! Shared by the integration tests that need them: a counting global allocator (each test
//! binary that wants it declares `#[global_allocator]` with it) and one-connection loopback
//! servers.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::thread;

/// Counts allocations and live bytes per thread.
pub struct CountingAllocator;

thread_local! {
    // Const-initialised and without Drop, so touching it never allocates.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static LIVE_BYTES: Cell<i64> = const { Cell::new(0) };
    static PEAK_BYTES: Cell<i64> = const { Cell::new(0) };
}

/// Adds `delta` to this thread's live bytes and keeps the peak.
fn add_live(delta: i64) {
    let live = LIVE_BYTES.with(|c| {
        let live = c.get() + delta;
        c.set(live);
        live
    });
    PEAK_BYTES.with(|p| p.set(p.get().max(live)));
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counters are
// thread-local cells that neither allocate nor unwind.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        add_live(layout.size() as i64);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add_live(-(layout.size() as i64));
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        add_live(new_size as i64 - layout.size() as i64);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// (allocations, live bytes) of this thread so far.
pub fn counters() -> (u64, i64) {
    (ALLOCATIONS.with(Cell::get), LIVE_BYTES.with(Cell::get))
}

/// The most live bytes this thread has had since the last call (starting from now).
pub fn take_peak() -> i64 {
    let live = LIVE_BYTES.with(Cell::get);
    PEAK_BYTES.with(|p| p.replace(live))
}

/// Reads up to the end of the request head; returns what came after it.
pub fn read_head(stream: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "client closed before its head was complete");
        seen.extend_from_slice(&buf[..n]);
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            return seen.split_off(end + 4);
        }
    }
}

/// One-connection server running `serve` on a thread; returns the URL.
pub fn serve_once<T: Send + 'static>(
    serve: impl FnOnce(TcpStream) -> T + Send + 'static,
) -> (String, thread::JoinHandle<T>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/up", listener.local_addr().unwrap());
    let handle = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        serve(stream)
    });
    (url, handle)
}

/// A listener that never accepts, with its queue filled: the kernel now drops new SYNs, so
/// a connect to it hangs. Keep the returned streams alive while it is used.
pub fn unanswered_listener() -> (TcpListener, Vec<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..2000 {
        match TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(100)) {
            Ok(stream) => held.push(stream),
            Err(_) => return (listener, held),
        }
    }
    panic!("the accept queue never filled");
}
