//! Ports for the tests' servers. A port from `bind(127.0.0.1:0)` comes from the kernel's
//! ephemeral range, where every other `bind(0)` and every outgoing connection take theirs: once
//! released, the next `bind(0)` of a parallel test (or of a child process) may be handed the
//! same port before the server it was meant for binds it. So test ports are drawn below that
//! range instead, from a block this process reserves by holding a listener on the block's first
//! port: another copy of this module (`common` and `servers` both include it) or another test
//! binary running at the same time finds the marker taken and reserves the next block.

use std::net::TcpListener;
use std::sync::Mutex;

/// Below Linux's default ephemeral range (32768–60999) and above the well-known services.
const FIRST: u16 = 10_000;
const LAST: u16 = 32_000;
const BLOCK: u16 = 64;

struct Blocks {
    /// Listeners on the first port of every block this process reserved; never released, so
    /// a port handed out but not yet bound cannot be handed out again by anyone else.
    markers: Vec<TcpListener>,
    next: u16,
    end: u16,
}

static BLOCKS: Mutex<Blocks> = Mutex::new(Blocks { markers: Vec::new(), next: 0, end: 0 });

/// A TCP port on 127.0.0.1, free when checked, not handed to any other test of this run.
pub fn free_port() -> u16 {
    let mut blocks = BLOCKS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    loop {
        while blocks.next < blocks.end {
            let port = blocks.next;
            blocks.next += 1;
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
        reserve(&mut blocks);
    }
}

fn reserve(blocks: &mut Blocks) {
    let count = (LAST - FIRST) / BLOCK;
    let start = match blocks.end {
        0 => (std::process::id() % u32::from(count)) as u16,
        end => (end - FIRST) / BLOCK,
    };
    for i in 0..count {
        let first = FIRST + ((start + i) % count) * BLOCK;
        if let Ok(marker) = TcpListener::bind(("127.0.0.1", first)) {
            blocks.markers.push(marker);
            (blocks.next, blocks.end) = (first + 1, first + BLOCK);
            return;
        }
    }
    panic!("no free block of {BLOCK} test ports between {FIRST} and {LAST}");
}
