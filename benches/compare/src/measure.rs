//! Measuring a process whole: CPU time and peak RSS from the kernel's own accounting
//! (`wait4`'s rusage, in microseconds), the wall clock around it, and the pinning to a CPU.
//!
//! Clients are started through a small launcher (this binary's `launch` mode) rather than
//! forked from the comparison itself, because a child's `ru_maxrss` also counts the memory
//! of the process it was forked from up to its `exec`: forked from the comparison it would
//! carry the comparison's heap. The launcher forks from a freshly started process, whose
//! anonymous memory is a few hundred KiB, well under any contender's peak.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Options, Result};

/// What one process used, from its rusage.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub seconds: f64,
    pub cpu_seconds: f64,
    pub peak_rss_kib: u64,
}

/// Lets the comparison and its children hold many sockets and files: the soft limit on
/// open files goes up to the hard one (children inherit it).
pub fn raise_open_files() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// The soft limit on open files, after [`raise_open_files`].
pub fn open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: as above.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur
    } else {
        0
    }
}

/// Whether this process may run on CPUs 0 and 1, the client's and the sink's.
pub fn can_pin() -> bool {
    // SAFETY: a zeroed cpu_set_t is the empty set; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0
            && libc::CPU_ISSET(0, &set)
            && libc::CPU_ISSET(1, &set)
    }
}

/// Makes `command` run on `cpu` only. This forces a fork (not a vfork-style spawn), so the
/// child starts with a copy of only the anonymous pages of its parent.
fn pin(command: &mut Command, cpu: Option<usize>) {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET only sets a bit in it.
    let set = cpu.map(|cpu| unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        set
    });
    // SAFETY: between fork and exec the closure makes one system call, which is
    // async-signal-safe, and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if let Some(set) = &set
                && libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Waits for `pid` and returns its exit status and rusage.
fn wait4(pid: u32) -> io::Result<(i32, libc::rusage)> {
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid; wait4 fills it for the child it reaps.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is a child of this process that nothing else waits for.
        let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
        if r >= 0 {
            return Ok((status, usage));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

fn cpu_seconds(usage: &libc::rusage) -> f64 {
    let micros = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    micros(usage.ru_utime) + micros(usage.ru_stime)
}

/// `launch CPU|- -- COMMAND ARGS...`: runs COMMAND pinned to CPU, its standard output to
/// /dev/null and its standard error inherited, and prints one line: wall microseconds, CPU
/// microseconds (user + system), peak RSS in KiB, and the exit status (a signal as 128+N).
pub fn launch(args: &[String]) -> Result<()> {
    let (cpu, command) = match args {
        [cpu, dashes, command @ ..] if dashes == "--" && !command.is_empty() => (cpu, command),
        _ => return Err("usage: launch CPU|- -- COMMAND ARGS...".into()),
    };
    let cpu = if cpu == "-" { None } else { Some(cpu.parse()?) };
    let mut child = Command::new(&command[0]);
    child.args(&command[1..]).stdout(Stdio::null());
    pin(&mut child, cpu);
    let started = Instant::now();
    let spawned = child.spawn()?;
    let (status, usage) = wait4(spawned.id())?;
    let wall = started.elapsed();
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    println!(
        "{} {} {} {}",
        wall.as_micros(),
        (cpu_seconds(&usage) * 1e6).round() as u64,
        usage.ru_maxrss,
        code
    );
    Ok(())
}

/// Runs `command` on the client CPU through the launcher, in `dir` if given; fails with the
/// command's standard error if it does not exit 0.
pub fn run_client(
    options: &Options,
    name: &str,
    command: &[String],
    dir: Option<&Path>,
) -> Result<Usage> {
    let mut launcher = Command::new(std::env::current_exe()?);
    launcher
        .arg("launch")
        .arg(if options.pin { "0" } else { "-" })
        .arg("--")
        .args(command)
        .stdin(Stdio::null());
    if let Some(dir) = dir {
        launcher.current_dir(dir);
    }
    let output = launcher.output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let numbers: Vec<u64> = stdout
        .split_whitespace()
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| format!("{name}: the launcher failed: {}", stderr.trim()))?;
    let [wall_us, cpu_us, rss_kib, code] = numbers[..] else {
        return Err(format!("{name}: the launcher failed: {}", stderr.trim()).into());
    };
    if !output.status.success() || code != 0 {
        let tail: String = {
            let lines: Vec<&str> = stderr.trim().lines().collect();
            lines[lines.len().saturating_sub(5)..].join("\n")
        };
        return Err(format!("{name} exited with status {code}: {tail}").into());
    }
    Ok(Usage {
        seconds: wall_us as f64 / 1e6,
        cpu_seconds: cpu_us as f64 / 1e6,
        peak_rss_kib: rss_kib,
    })
}

/// Which sink a contender talks to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Kind {
    /// Speaks HTTP: `chunkwire sink`.
    Http,
    /// Counts raw bytes: this binary's `raw-sink`.
    Raw,
}

/// A sink process pinned to CPU 1, started for one run. Its CPU time for the run is read
/// from its process CPU clock (`clock_getcpuclockid`: every thread, those that have exited
/// too, in nanoseconds) once it is listening and again when the client is done, so starting
/// it (and making a TLS certificate) is not counted.
pub struct SinkProcess {
    child: Option<Child>,
    pub addr: String,
    /// The CA certificate the sink wrote, for TLS clients to trust.
    pub ca: PathBuf,
    cpu_at_start: f64,
}

impl SinkProcess {
    pub fn start(
        options: &Options,
        kind: Kind,
        tls: bool,
        max_connections: Option<usize>,
    ) -> Result<SinkProcess> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = format!("127.0.0.1:{port}");
        let ca = options.work.join(format!("sink-ca-{port}.pem"));
        let mut command: Vec<String> = match kind {
            Kind::Http => vec![
                options.chunkwire.display().to_string(),
                "sink".into(),
                "--listen".into(),
                addr.clone(),
            ],
            Kind::Raw => vec![
                std::env::current_exe()?.display().to_string(),
                "raw-sink".into(),
                addr.clone(),
            ],
        };
        if tls {
            command.extend(["--tls".into(), "--ca-out".into(), ca.display().to_string()]);
        }
        if let Some(n) = max_connections {
            command.extend(["--max-connections".into(), n.to_string()]);
        }
        let _ = std::fs::remove_file(&ca);
        let mut spawn = Command::new(&command[0]);
        spawn
            .args(&command[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        pin(&mut spawn, options.pin.then_some(1));
        let mut sink = SinkProcess {
            child: Some(spawn.spawn()?),
            addr,
            ca,
            cpu_at_start: 0.0,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        // The sink listens before it writes its CA file: wait for the whole certificate.
        let ca_written = |ca: &Path| {
            std::fs::read_to_string(ca).is_ok_and(|pem| pem.contains("-----END CERTIFICATE-----"))
        };
        while TcpStream::connect(&sink.addr).is_err() || (tls && !ca_written(&sink.ca)) {
            if Instant::now() > deadline {
                return Err(format!("the sink did not start: {command:?}").into());
            }
            if let Some(Ok(Some(status))) = sink.child.as_mut().map(Child::try_wait) {
                sink.child = None;
                return Err(format!("the sink exited ({status}): {command:?}").into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        sink.cpu_at_start = sink.cpu_now()?;
        Ok(sink)
    }

    /// CPU seconds the sink has used so far.
    fn cpu_now(&self) -> Result<f64> {
        let pid = self.child.as_ref().ok_or("the sink is gone")?.id();
        let mut clock: libc::clockid_t = 0;
        // SAFETY: a zeroed timespec is valid; both calls only write what they are given.
        unsafe {
            let mut now: libc::timespec = std::mem::zeroed();
            if libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) != 0
                || libc::clock_gettime(clock, &mut now) != 0
            {
                return Err(format!(
                    "cannot read the sink's CPU clock: {}",
                    io::Error::last_os_error()
                )
                .into());
            }
            Ok(now.tv_sec as f64 + now.tv_nsec as f64 / 1e9)
        }
    }

    /// Stops the sink and returns the CPU seconds it used since it started listening.
    pub fn stop(mut self) -> Result<f64> {
        let cpu = self.cpu_now()? - self.cpu_at_start;
        let child = self.child.take().ok_or("the sink is gone")?;
        // SAFETY: the pid is our unreaped child.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
        wait4(child.id())?;
        Ok(cpu)
    }
}

impl Drop for SinkProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts a sink, runs `f` against it, and returns what `f` returned and the CPU seconds
/// the sink used meanwhile.
pub fn with_sink<T>(
    options: &Options,
    kind: Kind,
    tls: bool,
    max_connections: Option<usize>,
    f: impl FnOnce(&SinkProcess) -> Result<T>,
) -> Result<(T, f64)> {
    let sink = SinkProcess::start(options, kind, tls, max_connections)?;
    let result = f(&sink)?;
    let cpu = sink.stop()?;
    Ok((result, cpu))
}
