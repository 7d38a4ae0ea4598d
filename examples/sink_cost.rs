//! What the sink costs per byte: CPU seconds per GiB of the sink's own threads for a
//! Content-Length body and for chunked bodies of several chunk sizes, with a client that
//! writes pre-framed bytes from memory so fast that the sink is the bottleneck (the worst
//! case for the sink, and the one where its decoding shows).
//!
//! ```text
//! cargo run --release --example sink_cost -- [GIB] [CHUNK_SIZE...]
//! taskset -c 0,1 target/release/examples/sink_cost 2 4k 16k 48k 1M
//! ```
//!
//! Linux only: the sink's CPU time is read from `/proc/self/task/*/schedstat`, summed over
//! the threads named `chunkwire-sink*`, on one kept-alive connection so that no thread of
//! the sink ends between the two readings.

#[cfg(all(feature = "sink", target_os = "linux"))]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    linux::main()
}

#[cfg(not(all(feature = "sink", target_os = "linux")))]
fn main() {
    eprintln!("sink_cost needs Linux and the `sink` feature");
}

#[cfg(all(feature = "sink", target_os = "linux"))]
mod linux {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    use chunkwire::sink::Sink;

    /// Bytes written per `write`: large, so the client is never what limits the rate.
    const WRITE: usize = 1 << 20;
    /// Runs per body kind, taken in turn; the report shows the median.
    const RUNS: usize = 3;

    pub fn main() -> Result<(), Box<dyn std::error::Error>> {
        let mut args = std::env::args().skip(1);
        let gib: u64 = args.next().map_or(Ok(1), |a| a.parse())?;
        let mut sizes: Vec<usize> = args.map(|a| parse_size(&a)).collect::<Result<_, _>>()?;
        if sizes.is_empty() {
            sizes = vec![4 << 10, 16 << 10, 48 << 10, 1 << 20];
        }
        let total = gib << 30;
        let sink = Sink::bind("127.0.0.1:0")?.spawn()?;
        let mut stream = TcpStream::connect(sink.addr())?;
        stream.set_nodelay(true)?;
        let mut replies = BufReader::new(stream.try_clone()?);
        let data: Vec<u8> = (0..WRITE).map(|i| (i * 7 + i / 4096) as u8).collect();

        let mut kinds: Vec<(String, Option<usize>)> = vec![("content-length".into(), None)];
        kinds.extend(
            sizes
                .iter()
                .map(|&s| (format!("chunked {}", show_size(s)), Some(s))),
        );
        let mut samples: Vec<Vec<(f64, f64)>> = vec![Vec::new(); kinds.len()];
        // Warm up: the first upload pays for page faults in the sink's buffer.
        upload(&mut stream, &mut replies, &data, 64 << 20, None)?;
        for _ in 0..RUNS {
            for (i, (_, chunk)) in kinds.iter().enumerate() {
                let before = sink_cpu()?;
                let started = Instant::now();
                upload(&mut stream, &mut replies, &data, total, *chunk)?;
                let wall = started.elapsed();
                let cpu = sink_cpu()? - before;
                let gibs = total as f64 / f64::from(1u32 << 30);
                samples[i].push((cpu.as_secs_f64() / gibs, wall.as_secs_f64() / gibs));
            }
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let raw = median(samples[0].iter().map(|s| s.0).collect());
        println!("{gib} GiB a run, {RUNS} runs, median; sink CPU s/GiB and wall s/GiB");
        for ((name, _), s) in kinds.iter().zip(samples) {
            let cpu = median(s.iter().map(|s| s.0).collect());
            let wall = median(s.iter().map(|s| s.1).collect());
            println!(
                "{name:<16} sink {cpu:.3} s/GiB  ({:.2}x content-length)  wall {wall:.3} s/GiB",
                cpu / raw
            );
        }
        Ok(())
    }

    /// Sends one PUT of `total` bytes and waits for its report.
    fn upload(
        stream: &mut TcpStream,
        replies: &mut BufReader<TcpStream>,
        data: &[u8],
        total: u64,
        chunk: Option<usize>,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let Some(chunk) = chunk else {
            write!(
                stream,
                "PUT /cost HTTP/1.1\r\nHost: sink\r\nContent-Length: {total}\r\n\r\n"
            )?;
            let mut left = total;
            while left > 0 {
                let n = left.min(data.len() as u64) as usize;
                stream.write_all(&data[..n])?;
                left -= n as u64;
            }
            return check_reply(replies, total);
        };
        write!(
            stream,
            "PUT /cost HTTP/1.1\r\nHost: sink\r\nTransfer-Encoding: chunked\r\n\r\n"
        )?;
        // One write's worth of whole chunks, framed once and sent again and again.
        let per_write = (WRITE / chunk).max(1);
        let mut framed = Vec::with_capacity(per_write * (chunk + 32));
        let mut framed_bytes = 0u64;
        for i in 0..per_write {
            let start = (i * chunk) % data.len();
            let piece = &data[start..(start + chunk).min(data.len())];
            write!(framed, "{:x}\r\n", piece.len())?;
            framed.extend_from_slice(piece);
            framed.extend_from_slice(b"\r\n");
            framed_bytes += piece.len() as u64;
        }
        let mut left = total;
        while left >= framed_bytes {
            stream.write_all(&framed)?;
            left -= framed_bytes;
        }
        if left > 0 {
            write!(stream, "{left:x}\r\n")?;
            stream.write_all(&data[..left as usize])?;
            stream.write_all(b"\r\n")?;
        }
        stream.write_all(b"0\r\n\r\n")?;
        check_reply(replies, total)
    }

    fn check_reply(
        replies: &mut BufReader<TcpStream>,
        total: u64,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let mut length = 0;
        loop {
            let mut line = String::new();
            replies.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse()?;
            }
        }
        let mut body = vec![0; length];
        replies.read_exact(&mut body)?;
        let body = String::from_utf8(body)?;
        if !body.contains(&format!("\"bytes\":{total},")) {
            return Err(format!("unexpected report: {body}").into());
        }
        Ok(())
    }

    /// CPU time so far of this process's threads named `chunkwire-sink*`.
    fn sink_cpu() -> std::io::Result<Duration> {
        let mut ns = 0u64;
        for task in std::fs::read_dir("/proc/self/task")? {
            let path = task?.path();
            let Ok(comm) = std::fs::read_to_string(path.join("comm")) else {
                continue;
            };
            if !comm.starts_with("chunkwire-sink") {
                continue;
            }
            // The first field is the time spent on the CPU, in nanoseconds.
            let Ok(stat) = std::fs::read_to_string(path.join("schedstat")) else {
                continue;
            };
            ns += stat
                .split_whitespace()
                .next()
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0);
        }
        Ok(Duration::from_nanos(ns))
    }

    fn parse_size(text: &str) -> Result<usize, std::num::ParseIntError> {
        let (digits, unit) = match text.as_bytes().last() {
            Some(b'k' | b'K') => (&text[..text.len() - 1], 1 << 10),
            Some(b'm' | b'M') => (&text[..text.len() - 1], 1 << 20),
            _ => (text, 1),
        };
        Ok(digits.parse::<usize>()? * unit)
    }

    fn show_size(size: usize) -> String {
        match size {
            s if s % (1 << 20) == 0 => format!("{}M", s >> 20),
            s if s % (1 << 10) == 0 => format!("{}k", s >> 10),
            s => s.to_string(),
        }
    }
}
