//! Uploads driven from the caller's own mio `Poll`, next to a socket of the caller's own: a
//! UDP socket that keeps receiving datagrams while three uploads run on the same thread.
//!
//! `cargo run --example caller_loop` (it uploads to a loopback sink it starts itself).
//! `tests/caller_loop.rs` runs the same code as a test.

use std::time::{Duration, Instant};

use chunkwire::mio::net::UdpSocket;
use chunkwire::mio::{Events, Interest, Poll, Token};

/// The caller's own socket.
const DATAGRAMS: Token = Token(0);
/// The tokens handed to the uploads: the first wakes the loop when a name resolves, the
/// rest are for their connections.
const UPLOAD_TOKENS: std::ops::Range<usize> = 1..1001;

/// What the loop saw: the uploads' statuses, and datagrams received meanwhile.
pub struct Outcome {
    pub statuses: Vec<u16>,
    pub datagrams: usize,
}

pub fn run() -> Result<Outcome, Box<dyn std::error::Error>> {
    let sink = chunkwire::sink::Sink::bind("127.0.0.1:0")?.spawn()?;

    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(256);
    let mut socket = UdpSocket::bind("127.0.0.1:0".parse()?)?;
    poll.registry()
        .register(&mut socket, DATAGRAMS, Interest::READABLE)?;
    // Something else talks to the caller while the uploads run.
    let talker = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let caller_addr = socket.local_addr()?;

    // The bodies are borrowed by the set, so they are made before it.
    let bodies = [vec![1u8; 3 << 20], vec![2u8; 1 << 20], b"small".to_vec()];
    let client = chunkwire::Client::new();
    let mut uploads = client.uploads_in(poll.registry(), UPLOAD_TOKENS)?;
    for (i, body) in bodies.iter().enumerate() {
        uploads.add(client.upload(&sink.url(&format!("/camera/{i}"))), &body[..]);
    }

    let mut statuses = Vec::new();
    let mut datagrams = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while statuses.len() < bodies.len() {
        if Instant::now() > deadline {
            return Err("the uploads did not finish in 30 s".into());
        }
        talker.send_to(b"ping", caller_addr)?;
        // Sleep no longer than the uploads allow.
        let timeout = uploads
            .next_timeout(Instant::now())
            .map_or(Duration::from_millis(100), |t| {
                t.min(Duration::from_millis(100))
            });
        poll.poll(&mut events, Some(timeout))?;
        for event in events.iter() {
            if event.token() == DATAGRAMS {
                let mut buf = [0u8; 64];
                while socket.recv_from(&mut buf).is_ok() {
                    datagrams += 1;
                }
            } else {
                uploads.handle_event(event);
            }
        }
        uploads.handle_timeout(Instant::now());
        while let Some(finished) = uploads.poll_finished() {
            statuses.push(finished.result?.status.as_u16());
        }
    }
    Ok(Outcome {
        statuses,
        datagrams,
    })
}

#[allow(dead_code)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let outcome = run()?;
    println!(
        "uploads answered {:?}; {} datagrams received on the same thread meanwhile",
        outcome.statuses, outcome.datagrams
    );
    Ok(())
}
