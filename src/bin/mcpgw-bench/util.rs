//! Small process and file helpers: a temp folder, children that die with the bench, RSS.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A folder removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Result<TempDir, String> {
        let dir = std::env::temp_dir().join(format!("mcpgw-bench-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(TempDir(dir))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process that gets SIGTERM (then SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
    /// stderr lines, when captured.
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Spawns `cmd` with stderr captured; `on_line` sees each stderr line (for readiness).
    pub fn spawn(
        name: &str,
        mut cmd: Command,
        ready_prefix: Option<&str>,
        wait: Duration,
    ) -> Result<(Proc, Option<String>), String> {
        // The child gets SIGTERM if the bench dies (release builds abort on panic, so no Drop).
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let Some(stderr) = child.stderr.take() else {
            let _ = child.kill();
            return Err(format!("{name} was started without a stderr pipe"));
        };
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let (tx, rx) = mpsc::channel();
        let prefix = ready_prefix.map(str::to_string);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(p) = &prefix
                    && let Some(rest) = line.strip_prefix(p.as_str())
                {
                    let _ = tx.send(rest.to_string());
                }
                let mut l = sink.lock().unwrap_or_else(|p| p.into_inner());
                if l.len() < 1000 {
                    l.push(line);
                }
            }
        });
        let mut proc = Proc {
            child,
            stderr: lines,
        };
        if ready_prefix.is_none() {
            return Ok((proc, None));
        }
        match rx.recv_timeout(wait) {
            Ok(rest) => Ok((proc, Some(rest))),
            Err(_) => {
                let status = proc.child.try_wait().ok().flatten();
                Err(format!(
                    "{name} did not become ready in {wait:?} (status {status:?}); stderr: {:?}",
                    proc.stderr.lock().unwrap_or_else(|p| p.into_inner())
                ))
            }
        }
    }

    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid())
    }

    /// SIGTERM, wait up to 30 s (a profiler writes its output on exit), then SIGKILL.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// VmRSS of a process in KiB.
pub fn rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_tcp(addr: SocketAddr, wait: Duration) -> Result<(), String> {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(format!("nothing listens on {addr} after {wait:?}"))
}

/// A binary next to this one (target/release/NAME).
pub fn sibling(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = exe.with_file_name(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found: build it first (cargo build --release --bins)",
            path.display()
        ))
    }
}

/// A syslog datagram socket drained by a thread, as syslogd would; counts the lines.
pub struct SyslogSink {
    pub path: PathBuf,
    pub lines: Arc<AtomicU64>,
}

impl SyslogSink {
    pub fn bind(path: &Path) -> Result<SyslogSink, String> {
        let sock = UnixDatagram::bind(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let lines = Arc::new(AtomicU64::new(0));
        let count = lines.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while sock.recv(&mut buf).is_ok() {
                count.fetch_add(1, Ordering::Relaxed);
            }
        });
        Ok(SyslogSink {
            path: path.to_path_buf(),
            lines,
        })
    }
}

pub fn file_size(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

/// Whose CPU time a scenario charges to the server under test.
#[derive(Clone, Debug)]
pub enum CpuProbe {
    /// One process, all its threads (mcpgw).
    Process(i32),
    /// A process and its direct children (nginx: master and workers).
    ProcessTree(i32),
    /// This process's threads with this name (the in-process floor).
    Threads(&'static str),
}

impl CpuProbe {
    /// User + system time so far, in clock ticks; `None` where /proc cannot tell.
    pub fn ticks(&self) -> Option<u64> {
        match self {
            CpuProbe::Process(pid) => stat_ticks(&format!("/proc/{pid}/stat")),
            CpuProbe::ProcessTree(pid) => {
                let children =
                    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
                let mut total = stat_ticks(&format!("/proc/{pid}/stat"))?;
                for child in children.split_whitespace() {
                    total += stat_ticks(&format!("/proc/{child}/stat")).unwrap_or(0);
                }
                Some(total)
            }
            CpuProbe::Threads(name) => {
                let mut total = 0;
                for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
                    let comm =
                        std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
                    if comm.trim_end() == *name {
                        total +=
                            stat_ticks(&task.path().join("stat").to_string_lossy()).unwrap_or(0);
                    }
                }
                Some(total)
            }
        }
    }

    /// Microseconds per clock tick.
    pub fn tick_us() -> f64 {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        1e6 / if hz > 0 { hz as f64 } else { 100.0 }
    }
}

/// utime + stime (fields 14 and 15) of a /proc stat file.
fn stat_ticks(path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces and parentheses: fields are counted after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}
