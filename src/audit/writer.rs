//! The audit writer thread: takes items off the queue in order and sends RFC 5424 datagrams.
//!
//! Failure handling: while the socket is missing or sends fail, records are dropped and
//! counted; the socket is re-connected at most once per [`RETRY`] (the thread sleeps in the
//! queue's `recv_timeout` meanwhile, it never spins). Once a send can happen again, the first
//! line is an Error report of how many records were lost since the last report (including
//! queue-full drops), then writing continues. Each send has a timeout (`[syslog]
//! send_timeout_ms`, 100 ms by default), so a stuck syslog costs at most one timeout per retry
//! period.

use std::collections::HashSet;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::{Duration, Instant, SystemTime};

use super::line::{Framer, format_decision_into, format_event, header_field};
use super::{ABORT, DRAIN, Item, Severity, Shared, severity_of};
use crate::config::SyslogConfig;

/// Shortest time between two connection attempts.
pub(super) const RETRY: Duration = Duration::from_secs(1);
/// After the last record, how long the writer keeps polling the queue (short sleeps) before
/// it blocks on it again. While it polls, callers queue records without a wake-up (a futex
/// call and a context switch on the request path); records are still sent one by one, in
/// order.
const LINGER: Duration = Duration::from_millis(20);
/// Longest sleep between two polls while lingering.
const MAX_POLL: Duration = Duration::from_millis(2);
/// How often an idle, connected writer checks for unreported queue-full drops.
const IDLE_TICK: Duration = Duration::from_secs(1);
/// Send buffer the socket gets at least, so a whole line fits in one datagram even where the
/// default datagram limit is small (FreeBSD's `net.local.dgram.maxdgram`).
const MIN_SNDBUF: libc::c_int = 16 * 1024;

/// The writer thread's state; owned by the thread.
pub(super) struct Writer {
    rx: Receiver<Item>,
    shared: Arc<Shared>,
    done: Sender<()>,
    path: PathBuf,
    send_timeout: Duration,
    /// Frames lines (header text and the timestamp to the second are cached).
    framer: Framer,
    /// The message of the record being written, reused from record to record.
    msg: String,
    /// The framed line being sent, reused from record to record.
    line: String,
    log_arguments: HashSet<String>,
    sock: Option<UnixDatagram>,
    last_attempt: Option<Instant>,
    /// Value of `shared.dropped` covered by the last report.
    reported: u64,
    /// Whether syslog failed since the last report (picks the report's wording).
    unavailable: bool,
    /// Sleep between polls while lingering: short enough that a burst cannot fill the queue
    /// meanwhile (a quarter of the queue at 100,000 records/s).
    poll: Duration,
}

impl Writer {
    pub(super) fn new(
        cfg: &SyslogConfig,
        rx: Receiver<Item>,
        shared: Arc<Shared>,
        done: Sender<()>,
    ) -> Writer {
        let host = match &cfg.hostname {
            Some(name) => header_field(name, 255),
            None => header_field(&machine_hostname(), 255),
        };
        Writer {
            rx,
            shared,
            done,
            path: cfg.socket.clone(),
            send_timeout: cfg.send_timeout,
            framer: Framer::new(&host, std::process::id()),
            msg: String::with_capacity(512),
            line: String::with_capacity(640),
            log_arguments: cfg.log_arguments.iter().cloned().collect(),
            sock: None,
            last_attempt: None,
            reported: 0,
            unavailable: false,
            poll: (Duration::from_micros(10) * u32::try_from(cfg.queue / 4).unwrap_or(u32::MAX))
                .clamp(Duration::from_micros(20), MAX_POLL),
        }
    }

    /// The thread body: runs until shutdown or until every [`super::Auditor`] is gone.
    pub(super) fn run(mut self) {
        self.connect();
        // When the last record was handled (`None`: blocked waiting, not lingering).
        let mut last: Option<Instant> = None;
        loop {
            match self.shared.state.load(Ordering::SeqCst) {
                ABORT => break,
                DRAIN => match self.rx.try_recv() {
                    Ok(item) => self.handle(item),
                    Err(_) => break,
                },
                _ => match self.rx.try_recv() {
                    Ok(item) => {
                        self.handle(item);
                        last = Some(Instant::now());
                    }
                    Err(TryRecvError::Disconnected) => break,
                    Err(TryRecvError::Empty) => match last {
                        Some(t) if t.elapsed() < LINGER => std::thread::sleep(self.poll),
                        _ => {
                            last = None;
                            match self.rx.recv_timeout(self.idle_wait()) {
                                Ok(item) => {
                                    self.handle(item);
                                    last = Some(Instant::now());
                                }
                                Err(RecvTimeoutError::Timeout) => self.tick(),
                                Err(RecvTimeoutError::Disconnected) => break,
                            }
                        }
                    },
                },
            }
        }
        // Whatever is still queued (an aborted shutdown) is counted, never silently lost.
        while let Ok(item) = self.rx.try_recv() {
            if !matches!(item, Item::Wake) {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        let _ = self.done.send(());
    }

    /// How long to wait for work before [`Writer::tick`].
    fn idle_wait(&self) -> Duration {
        match (&self.sock, self.last_attempt) {
            (None, Some(t)) => (t + RETRY)
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10)),
            _ => IDLE_TICK,
        }
    }

    /// No work: reconnect when due, and report drops as soon as syslog takes lines.
    fn tick(&mut self) {
        if self.sock.is_none() && self.retry_due() {
            self.connect();
        }
        if self.sock.is_some() {
            self.report_drops();
        }
    }

    fn handle(&mut self, item: Item) {
        let mut msg = std::mem::take(&mut self.msg);
        let severity = match item {
            Item::Decision(mut rec) => {
                if !rec.arguments.is_empty() {
                    rec.arguments
                        .retain(|(name, _)| self.log_arguments.contains(name));
                }
                format_decision_into(&rec, &mut msg);
                severity_of(&rec)
            }
            Item::Event(severity, message) => {
                msg = format_event(&message);
                severity
            }
            Item::Wake => {
                self.msg = msg;
                return;
            }
        };
        let sent = self.deliver(severity, &msg);
        self.msg = msg;
        if sent {
            self.shared.written.fetch_add(1, Ordering::Relaxed);
        } else {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            self.unavailable = true;
        }
    }

    /// Sends one line (after any pending drop report); false when it could not be sent.
    fn deliver(&mut self, severity: Severity, msg: &str) -> bool {
        if self.sock.is_none() && self.retry_due() {
            self.connect();
        }
        if self.sock.is_none() || !self.report_drops() {
            return false;
        }
        self.send_line(severity, msg)
    }

    /// Writes the "N records dropped" report if anything was dropped since the last one.
    /// False when it could not be sent (the drops stay unreported).
    fn report_drops(&mut self) -> bool {
        let total = self.shared.dropped.load(Ordering::Relaxed);
        if total <= self.reported {
            return true;
        }
        let n = total - self.reported;
        let text = if self.unavailable {
            format!("syslog was unavailable: {n} records dropped")
        } else {
            format!("audit queue full: {n} records dropped")
        };
        if self.send_line(Severity::Error, &text) {
            self.reported = total;
            self.unavailable = false;
            true
        } else {
            false
        }
    }

    /// Frames and sends `msg`. On a failure other than a timeout (e.g. syslogd restarted and
    /// its socket is a new one) it reconnects and resends once, if a retry is due.
    fn send_line(&mut self, severity: Severity, msg: &str) -> bool {
        let mut line = std::mem::take(&mut self.line);
        self.framer
            .frame_into(&mut line, severity, SystemTime::now(), msg);
        let sent = self.send_framed(&line);
        self.line = line;
        sent
    }

    fn send_framed(&mut self, line: &str) -> bool {
        let Some(sock) = &self.sock else {
            return false;
        };
        match sock.send(line.as_bytes()) {
            Ok(_) => true,
            Err(e) => {
                self.sock = None;
                if is_timeout(&e) || !self.retry_due() {
                    return false;
                }
                self.connect();
                match &self.sock {
                    Some(sock) if sock.send(line.as_bytes()).is_ok() => true,
                    _ => {
                        self.sock = None;
                        false
                    }
                }
            }
        }
    }

    fn retry_due(&self) -> bool {
        self.last_attempt.is_none_or(|t| t.elapsed() >= RETRY)
    }

    /// One connection attempt; leaves `sock` set on success.
    fn connect(&mut self) {
        self.last_attempt = Some(Instant::now());
        self.sock = open(&self.path, self.send_timeout).ok();
    }
}

/// A datagram socket connected to `path`, with a send timeout and a big enough send buffer.
fn open(path: &std::path::Path, send_timeout: Duration) -> io::Result<UnixDatagram> {
    let sock = UnixDatagram::unbound()?;
    sock.set_write_timeout(Some(send_timeout))?;
    raise_sndbuf(&sock);
    sock.connect(path)?;
    Ok(sock)
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Raises SO_SNDBUF to [`MIN_SNDBUF`] when it is smaller (best effort).
fn raise_sndbuf(sock: &UnixDatagram) {
    let fd = sock.as_raw_fd();
    let mut current: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is an open socket owned by `sock`; the pointers are to live locals of the
    // sizes passed.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&raw mut current).cast(),
            &raw mut len,
        )
    };
    if rc == 0 && current >= MIN_SNDBUF {
        return;
    }
    let want = MIN_SNDBUF;
    // SAFETY: as above; `want` lives for the call.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&raw const want).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// The machine's host name, or `-` when it cannot be read.
fn machine_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for `buf.len()` bytes; gethostname writes at most that many.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "-".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
