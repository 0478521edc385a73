//! The stdio upstream: one supervised child process speaking newline-delimited JSON-RPC, with
//! a pending-call table keyed by the gateway's own ids, restarts with backoff, and a clean stop
//! (close stdin, SIGTERM, SIGKILL, reap).
//!
//! Tasks per child: a writer for stdin's backlog, a reader for stdout (matches responses,
//! refuses server requests, skips non-JSON lines), a reader for stderr (forwarded as events),
//! and one supervisor for the whole life of the [`StdioUpstream`].
//!
//! A call writes its line into the child's stdin itself, from whichever worker thread it runs
//! on, while the pipe has room: handing every line to the writer task cost a wake-up of the
//! main thread per call. Only when the pipe is full does a line go to the writer task, and
//! every later one follows it there until the writer has caught up, so lines keep their
//! order. Writes happen under the connection's own stdin lock, never under the state lock:
//! a pipe write can take microseconds (it wakes the child), and the stdout reader needs the
//! state lock for every answer. Short lines (at most `PIPE_BUF` bytes, which a pipe takes
//! whole or not at all) are written under that lock's shared side, so workers do not queue
//! behind each other's writes.

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader, BufWriter};
use tokio::process::{Child, ChildStdin};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{
    Common, Incoming, MAX_MESSAGE_BYTES, Outcome, UpstreamError, UpstreamEvent, cancelled,
    classify, encode, excerpt, initialize_params, refuse,
};

/// First restart delay; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A child that ran this long before exiting restarts after [`MIN_BACKOFF`] again.
const HEALTHY_RUN: Duration = Duration::from_secs(30);
/// How long a child may take to exit after SIGTERM before it gets SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);
/// How long to wait for the writer to close stdin before signalling.
const CLOSE_GRACE: Duration = Duration::from_millis(200);

type Reply = oneshot::Sender<Result<Outcome, UpstreamError>>;

struct Pending {
    generation: u64,
    reply: Reply,
}

/// One initialized child, as calls see it.
struct Conn {
    generation: u64,
    /// Its stdin. Short lines are written under the read lock, in parallel (see
    /// [`Conn::send`]); everything else happens under the write lock.
    stdin: RwLock<Stdin>,
}

impl Conn {
    fn new(generation: u64, stdin: Stdin) -> Conn {
        Conn {
            generation,
            stdin: RwLock::new(stdin),
        }
    }

    /// Sends one line: straight into the pipe while nothing is queued and the pipe has room,
    /// else (the rest of it) through the writer task. `Err` when the writer has ended (the
    /// child's stdin is gone).
    ///
    /// A line of at most `PIPE_BUF` bytes goes into a pipe whole or not at all (POSIX), so
    /// such lines are written under the shared read lock: callers on different workers do
    /// not wait for each other's write (a pipe write wakes the child and takes
    /// microseconds). Partial writes, queueing and the backlog flag take the write lock, so
    /// a short line can never land inside a long one.
    fn send(&self, line: String) -> Result<(), ()> {
        let mut line = line.into_bytes();
        if line.len() <= PIPE_BUF {
            let stdin = self.stdin.read().unwrap_or_else(|p| p.into_inner());
            if !stdin.backlogged.load(Ordering::Acquire)
                && let Some(pipe) = &stdin.pipe
            {
                match write_short(pipe, &line) {
                    Ok(n) if n == line.len() => return Ok(()),
                    Ok(0) => {}
                    // POSIX rules this out for a pipe. Should it happen, no line is written
                    // directly any more: the rest, and every later line, go through the
                    // writer task in order.
                    Ok(n) => {
                        drop(stdin);
                        line.drain(..n);
                        let mut stdin = self.stdin.write().unwrap_or_else(|p| p.into_inner());
                        stdin.pipe = None;
                        return stdin.send(line);
                    }
                    // Broken: the write lock's path meets the error again and queues.
                    Err(_) => {}
                }
            }
        }
        self.stdin
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .send(line)
    }
}

/// The largest write a pipe takes atomically: POSIX guarantees at least 512 (FreeBSD's
/// value); Linux has 4096.
const PIPE_BUF: usize = libc::PIPE_BUF;

/// One `write(2)` of a line of at most [`PIPE_BUF`] bytes on the non-blocking pipe: the
/// bytes written, 0 when the pipe has no room for all of them now.
fn write_short(mut pipe: &std::fs::File, bytes: &[u8]) -> std::io::Result<usize> {
    use std::io::Write;
    loop {
        return match pipe.write(bytes) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => other,
        };
    }
}

/// The write side of a child's stdin.
struct Stdin {
    /// A second handle on the stdin pipe (non-blocking), written directly by calls. Dropped
    /// with the `Conn`, so closing stdin still ends with the writer task.
    pipe: Option<std::fs::File>,
    /// Lines wait in the writer task's queue: calls must queue behind them. Set and cleared
    /// under the write lock; read under either lock.
    backlogged: AtomicBool,
    /// The writer task's queue (bytes: a partial write may end inside a UTF-8 character).
    tx: mpsc::UnboundedSender<Vec<u8>>,
}

impl Stdin {
    /// [`Conn::send`] under the write lock: no other line is being written meanwhile.
    fn send(&mut self, mut line: Vec<u8>) -> Result<(), ()> {
        if !*self.backlogged.get_mut()
            && let Some(pipe) = &self.pipe
        {
            match write_nonblocking(pipe, &line) {
                Ok(n) if n == line.len() => return Ok(()),
                Ok(n) => {
                    line.drain(..n);
                }
                // A broken pipe: the writer task meets the same error and ends, which the
                // send below then reports; the child's exit is the supervisor's to handle.
                Err(_) => self.pipe = None,
            }
            *self.backlogged.get_mut() = true;
        }
        self.tx.send(line).map_err(|_| ())
    }
}

/// Writes as much of `bytes` as the pipe takes now; `Ok(n < len)` when it is full, or when
/// it broke after `n` bytes went in (the rest then fails again in the writer task, which
/// ends). `Err` only when nothing was written.
fn write_nonblocking(mut pipe: &std::fs::File, bytes: &[u8]) -> std::io::Result<usize> {
    use std::io::Write;
    let mut written = 0;
    while written < bytes.len() {
        match pipe.write(&bytes[written..]) {
            Ok(0) => break,
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if written == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(written)
}

/// A non-blocking second handle on the child's stdin, or `None` (every line then goes
/// through the writer task).
fn direct_pipe(stdin: &ChildStdin) -> Option<std::fs::File> {
    use std::os::fd::AsFd;
    let fd = stdin.as_fd().try_clone_to_owned().ok()?;
    // tokio made the pipe non-blocking already; the flag belongs to the shared open file,
    // and a blocking write here would stall a worker thread, so make sure.
    // SAFETY: F_GETFL on a descriptor we own has no memory-safety preconditions.
    let flags = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::F_GETFL) };
    if flags < 0 || flags & libc::O_NONBLOCK == 0 {
        return None;
    }
    Some(std::fs::File::from(fd))
}

#[derive(Default)]
struct State {
    /// `Some` while a child is running and initialized: calls go there.
    conn: Option<Arc<Conn>>,
    pending: HashMap<u64, Pending>,
    pid: Option<u32>,
    stopped: bool,
}

struct Shared {
    common: Arc<Common>,
    state: Mutex<State>,
    /// Bumped whenever `conn` becomes `Some` or the upstream stops, to wake waiting calls.
    ready: watch::Sender<u64>,
    shutdown: watch::Sender<bool>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the map inconsistent: keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake(&self) {
        self.ready.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Marks the child gone: answers every pending call with `error`; returns how many.
    fn fail_pending(&self, error: UpstreamError) -> usize {
        let drained: Vec<Pending> = {
            let mut st = self.lock();
            st.conn = None;
            st.pending.drain().map(|(_, p)| p).collect()
        };
        let n = drained.len();
        for p in drained {
            let _ = p.reply.send(Err(error.clone()));
        }
        n
    }
}

/// What to run.
#[derive(Clone)]
struct Spawn {
    command: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
}

/// A running child with its I/O tasks.
struct Running {
    child: Child,
    pid: Option<u32>,
    started: Instant,
    writer: JoinHandle<()>,
}

/// The stdio transport of [`super::Upstream`].
pub(crate) struct StdioUpstream {
    shared: Arc<Shared>,
    supervisor: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl StdioUpstream {
    pub(crate) async fn start(
        common: Arc<Common>,
        command: &str,
        args: &[String],
        env: &BTreeMap<String, String>,
    ) -> Result<StdioUpstream, UpstreamError> {
        let shared = Arc::new(Shared {
            common,
            state: Mutex::new(State::default()),
            ready: watch::Sender::new(0),
            shutdown: watch::Sender::new(false),
        });
        let spawn = Spawn {
            command: command.to_string(),
            args: args.to_vec(),
            env: env.clone(),
        };
        let running = bring_up(&shared, &spawn, 1).await?;
        let supervisor = tokio::spawn(supervise(shared.clone(), spawn, running));
        Ok(StdioUpstream {
            shared,
            supervisor: tokio::sync::Mutex::new(Some(supervisor)),
        })
    }

    pub(crate) fn child_pid(&self) -> Option<u32> {
        self.shared.lock().pid
    }

    pub(crate) async fn call(
        &self,
        method: &str,
        params: Option<&Value>,
    ) -> Result<Outcome, UpstreamError> {
        let shared = &self.shared;
        let deadline = Instant::now() + shared.common.call_timeout;
        let id = shared.common.next_id();
        let mut line = encode(Some(id), method, params);
        line.push('\n');
        let mut ready = shared.ready.subscribe();
        let (rx, mut guard) = loop {
            let published = {
                let mut st = shared.lock();
                if st.stopped {
                    return Err(UpstreamError::Unavailable(
                        "the upstream was shut down".into(),
                    ));
                }
                // Waiting before the line goes out, so the answer always finds its caller.
                st.conn.clone().map(|conn| {
                    let (tx, rx) = oneshot::channel();
                    st.pending.insert(
                        id,
                        Pending {
                            generation: conn.generation,
                            reply: tx,
                        },
                    );
                    (conn, rx)
                })
            };
            if let Some((conn, rx)) = published {
                if conn.send(line).is_err() {
                    shared.lock().pending.remove(&id);
                    return Err(UpstreamError::Died);
                }
                break (
                    rx,
                    CallGuard {
                        shared: shared.clone(),
                        id,
                        done: false,
                        reason: "request cancelled by the client",
                    },
                );
            }
            match tokio::time::timeout_at(deadline, ready.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    return Err(UpstreamError::Unavailable(
                        "the upstream is not running (restarting)".into(),
                    ));
                }
            }
        };
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(answer)) => {
                guard.done = true;
                answer
            }
            Ok(Err(_)) => {
                guard.done = true;
                Err(UpstreamError::Died)
            }
            Err(_) => {
                guard.reason = "timeout";
                drop(guard);
                Err(UpstreamError::Timeout)
            }
        }
    }

    pub(crate) fn notify(&self, method: &str, params: Option<&Value>) {
        let mut line = encode(None, method, params);
        line.push('\n');
        let conn = self.shared.lock().conn.clone();
        if let Some(conn) = conn {
            let _ = conn.send(line);
        }
    }

    pub(crate) async fn shutdown(&self) {
        let mut supervisor = self.supervisor.lock().await;
        {
            let mut st = self.shared.lock();
            st.stopped = true;
        }
        self.shared.wake();
        self.shared.shutdown.send_replace(true);
        if let Some(handle) = supervisor.take() {
            let _ = handle.await;
        }
    }
}

impl Drop for StdioUpstream {
    fn drop(&mut self) {
        // Without an explicit shutdown the supervisor still stops (and reaps) the child.
        self.shared.shutdown.send_replace(true);
    }
}

/// Removes an unanswered call from the table and cancels it upstream when its future is
/// dropped (or times out).
struct CallGuard {
    shared: Arc<Shared>,
    id: u64,
    done: bool,
    reason: &'static str,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let conn = {
            let mut st = self.shared.lock();
            let Some(p) = st.pending.remove(&self.id) else {
                return;
            };
            st.conn
                .clone()
                .filter(|conn| conn.generation == p.generation)
        };
        if let Some(conn) = conn {
            let mut line = cancelled(self.id, self.reason);
            line.push('\n');
            let _ = conn.send(line);
        }
    }
}

fn spawn_child(spawn: &Spawn) -> Result<Child, UpstreamError> {
    let mut cmd = tokio::process::Command::new(&spawn.command);
    cmd.args(&spawn.args)
        .envs(&spawn.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // Its own process group, so stopping it also stops whatever it started.
    #[cfg(unix)]
    cmd.process_group(0);
    cmd.spawn()
        .map_err(|e| UpstreamError::Unavailable(format!("cannot start {:?}: {e}", spawn.command)))
}

/// Sends `signal` to the child's process group and, while it is not reaped yet
/// (`leader_alive`), to the child itself. After the child was reaped only the group is
/// signalled: its id cannot be reused while members of the group remain.
fn signal(pid: Option<u32>, signal: libc::c_int, leader_alive: bool) {
    let Some(pid) = pid.and_then(|p| libc::pid_t::try_from(p).ok()) else {
        return;
    };
    if pid <= 1 {
        return;
    }
    // SAFETY: kill(2) has no memory-safety preconditions; the worst outcome is ESRCH.
    unsafe {
        libc::kill(-pid, signal);
        if leader_alive {
            libc::kill(pid, signal);
        }
    }
}

/// Kills a child that is not wanted any more and reaps it.
async fn kill_and_reap(child: &mut Child, pid: Option<u32>) {
    signal(pid, libc::SIGKILL, true);
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// Spawns a child, starts its I/O tasks and initializes it; publishes it for calls.
async fn bring_up(
    shared: &Arc<Shared>,
    spawn: &Spawn,
    generation: u64,
) -> Result<Running, UpstreamError> {
    let mut child = spawn_child(spawn)?;
    let pid = child.id();
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        kill_and_reap(&mut child, pid).await;
        return Err(UpstreamError::Unavailable(
            "the child has no stdio pipes".into(),
        ));
    };
    shared.lock().pid = pid;
    let (tx, rx) = mpsc::unbounded_channel::<Vec<u8>>();
    // Until it is published, the child's lines (initialize) go through the writer; it hands
    // writing to the callers once it has caught up.
    let to_writer = tx.downgrade();
    let conn = Arc::new(Conn::new(
        generation,
        Stdin {
            pipe: direct_pipe(&stdin),
            backlogged: AtomicBool::new(true),
            tx,
        },
    ));
    let writer = tokio::spawn(write_stdin(shared.clone(), generation, stdin, rx));
    tokio::spawn(read_stdout(
        shared.clone(),
        stdout,
        generation,
        to_writer.clone(),
    ));
    tokio::spawn(read_stderr(shared.common.clone(), stderr));

    let id = shared.common.next_id();
    let (reply, answer) = oneshot::channel();
    shared
        .lock()
        .pending
        .insert(id, Pending { generation, reply });
    let mut line = encode(Some(id), "initialize", Some(&initialize_params()));
    line.push('\n');
    if let Some(tx) = to_writer.upgrade() {
        let _ = tx.send(line.into_bytes());
    }
    let mut shutdown = shared.shutdown.subscribe();
    let outcome = tokio::select! {
        r = tokio::time::timeout(shared.common.call_timeout, answer) => match r {
            Ok(Ok(Ok(Outcome::Result(raw)))) => Outcome::parse(&raw),
            Ok(Ok(Ok(Outcome::Error(e)))) => {
                Err(UpstreamError::Protocol(format!("initialize was refused: {e}")))
            }
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(UpstreamError::Died),
            Err(_) => Err(UpstreamError::Unavailable("no answer to initialize".into())),
        },
        status = child.wait() => Err(UpstreamError::Unavailable(match status {
            Ok(s) => format!("exited during initialize ({s})"),
            Err(e) => format!("lost during initialize: {e}"),
        })),
        _ = shutdown.wait_for(|stop| *stop) => {
            Err(UpstreamError::Unavailable("shut down during initialize".into()))
        }
    };
    let outcome = outcome.and_then(|v| {
        if v.is_object() {
            Ok(v)
        } else {
            let shown = excerpt(&v.to_string());
            Err(UpstreamError::Protocol(format!(
                "initialize result is not an object: {shown}"
            )))
        }
    });
    let result = match outcome {
        Ok(v) => v,
        Err(e) => {
            shared.lock().pending.remove(&id);
            drop(conn);
            kill_and_reap(&mut child, pid).await;
            shared.lock().pid = None;
            return Err(e);
        }
    };
    shared.common.set_init_result(result);
    let mut line = encode(None, "notifications/initialized", None);
    line.push('\n');
    // Through the writer, as everything before publication: the writer clears `backlogged`
    // after its first batch once the child is published (or this very one, if published
    // in time).
    if let Some(tx) = to_writer.upgrade() {
        let _ = tx.send(line.into_bytes());
    }
    let published = {
        let mut st = shared.lock();
        if st.stopped {
            Err(conn)
        } else {
            st.conn = Some(conn);
            Ok(())
        }
    };
    if let Err(conn) = published {
        drop(conn);
        kill_and_reap(&mut child, pid).await;
        shared.lock().pid = None;
        return Err(UpstreamError::Unavailable(
            "shut down during initialize".into(),
        ));
    }
    shared.wake();
    shared.common.event(UpstreamEvent::Started { pid });
    Ok(Running {
        child,
        pid,
        started: Instant::now(),
        writer,
    })
}

/// Watches the child for its whole life: restarts it when it exits, stops it on shutdown.
async fn supervise(shared: Arc<Shared>, spawn: Spawn, first: Running) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut running = Some(first);
    let mut delay = MIN_BACKOFF;
    let mut generation = 1u64;
    loop {
        if let Some(mut run) = running.take() {
            let exited = tokio::select! {
                status = run.child.wait() => Some(status),
                _ = shutdown.wait_for(|stop| *stop) => None,
            };
            let Some(status) = exited else {
                stop(&shared, run).await;
                return;
            };
            let pending = shared.fail_pending(UpstreamError::Died);
            // Whatever the child left in its process group goes with it.
            signal(run.pid, libc::SIGKILL, false);
            shared.lock().pid = None;
            let status = match status {
                Ok(s) => s.to_string(),
                Err(e) => format!("wait failed: {e}"),
            };
            shared
                .common
                .event(UpstreamEvent::Exited { status, pending });
            if run.started.elapsed() >= HEALTHY_RUN {
                delay = MIN_BACKOFF;
            }
        }
        if *shutdown.borrow() {
            return;
        }
        shared
            .common
            .event(UpstreamEvent::Restarting { after: delay });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        delay = (delay * 2).min(MAX_BACKOFF);
        generation += 1;
        match bring_up(&shared, &spawn, generation).await {
            Ok(run) => running = Some(run),
            Err(e) => shared.common.event(UpstreamEvent::Exited {
                status: format!("restart failed: {e}"),
                pending: 0,
            }),
        }
    }
}

/// Stops a running child: close stdin, SIGTERM, wait up to [`TERM_GRACE`], SIGKILL, reap.
async fn stop(shared: &Shared, mut run: Running) {
    let pending = shared.fail_pending(UpstreamError::Unavailable(
        "the upstream was shut down".into(),
    ));
    // `fail_pending` dropped the connection, and with it the writer's sender (a call may hold
    // a clone for the length of one send): the writer ends and closes stdin.
    let _ = tokio::time::timeout(CLOSE_GRACE, &mut run.writer).await;
    signal(run.pid, libc::SIGTERM, true);
    let status = match tokio::time::timeout(TERM_GRACE, run.child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            signal(run.pid, libc::SIGKILL, true);
            let _ = run.child.start_kill();
            run.child.wait().await
        }
    };
    // Anything left in the child's group (it was sent SIGTERM with the child).
    signal(run.pid, libc::SIGKILL, false);
    shared.lock().pid = None;
    let status = match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("wait failed: {e}"),
    };
    shared
        .common
        .event(UpstreamEvent::Stopped { status, pending });
}

/// Writes the backlog: lines queued while the pipe was full (or before the child was
/// published). Once all are written and none is waiting, callers write directly again.
async fn write_stdin(
    shared: Arc<Shared>,
    generation: u64,
    stdin: ChildStdin,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let mut out = BufWriter::new(stdin);
    while let Some(line) = rx.recv().await {
        let mut ok = out.write_all(&line).await.is_ok();
        while ok && let Ok(more) = rx.try_recv() {
            ok = out.write_all(&more).await.is_ok();
        }
        if !ok || out.flush().await.is_err() {
            return;
        }
        // After publication, callers queue under the stdin lock, so an empty queue seen
        // under it stays empty until the flag is cleared. (Before it, only this child's
        // setup and its stdout reader queue, under the state lock; the child is not found
        // here then.)
        let conn = shared
            .lock()
            .conn
            .clone()
            .filter(|conn| conn.generation == generation);
        if let Some(conn) = conn {
            let mut stdin = conn.stdin.write().unwrap_or_else(|p| p.into_inner());
            if rx.is_empty() {
                *stdin.backlogged.get_mut() = false;
            }
        }
    }
    let _ = out.shutdown().await;
}

/// One line read by [`read_line`].
enum Line {
    Text,
    TooLong(usize),
    Eof,
}

/// Reads one line into `buf` (without the newline), keeping at most `max` bytes: a longer line
/// is consumed and reported as [`Line::TooLong`] with its length.
async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    buf.clear();
    let mut total = 0usize;
    let mut too_long = false;
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return Ok(match (total, too_long) {
                (0, _) => Line::Eof,
                (n, true) => Line::TooLong(n),
                _ => Line::Text,
            });
        }
        let newline = available.iter().position(|b| *b == b'\n');
        let chunk = &available[..newline.unwrap_or(available.len())];
        total = total.saturating_add(chunk.len());
        if !too_long {
            if buf.len() + chunk.len() > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        let used = chunk.len() + usize::from(newline.is_some());
        r.consume(used);
        if newline.is_some() {
            return Ok(if too_long {
                Line::TooLong(total)
            } else {
                Line::Text
            });
        }
    }
}

async fn read_stdout<R: AsyncRead + Unpin>(
    shared: Arc<Shared>,
    stdout: R,
    generation: u64,
    writer: mpsc::WeakUnboundedSender<Vec<u8>>,
) {
    let common = &shared.common;
    let mut reader = BufReader::with_capacity(64 << 10, stdout);
    let mut buf = Vec::new();
    loop {
        match read_line(&mut reader, &mut buf, MAX_MESSAGE_BYTES).await {
            Ok(Line::Text) => {}
            Ok(Line::TooLong(n)) => {
                common.event(UpstreamEvent::NonJsonLine(format!(
                    "[a stdout line of {n} bytes was skipped: longer than {MAX_MESSAGE_BYTES}]"
                )));
                continue;
            }
            Ok(Line::Eof) | Err(_) => return,
        }
        let line = buf.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let Some(msg) = classify(line) else {
            let text = String::from_utf8_lossy(line);
            common.event(UpstreamEvent::NonJsonLine(excerpt(&text)));
            continue;
        };
        match msg {
            Incoming::Response { id, outcome } => {
                let waiting = shared.lock().pending.remove(&id);
                match waiting {
                    Some(p) => {
                        let _ = p.reply.send(Ok(outcome));
                    }
                    None => common.event(UpstreamEvent::Dropped(format!(
                        "response to request {id}, which nobody waits for"
                    ))),
                }
            }
            Incoming::StrayResponse(id) => {
                common.event(UpstreamEvent::Dropped(format!(
                    "response with unknown id {id}"
                )));
            }
            Incoming::Request { id, method } => {
                let mut line = refuse(&id);
                line.push('\n');
                // Ordered like a call's line: direct or queued under the stdin lock once the
                // child is published. Before that only the writer writes, and the line is
                // queued under the state lock, which the writer takes before it hands writing
                // to callers.
                let st = shared.lock();
                match st.conn.clone() {
                    Some(conn) if conn.generation == generation => {
                        drop(st);
                        let _ = conn.send(line);
                    }
                    _ => {
                        if let Some(tx) = writer.upgrade() {
                            let _ = tx.send(line.into_bytes());
                        }
                        drop(st);
                    }
                }
                common.event(UpstreamEvent::Dropped(format!(
                    "server request {method} (refused)"
                )));
            }
            Incoming::Notification { method } => common.event(UpstreamEvent::Dropped(method)),
            Incoming::Invalid(why) => common.event(UpstreamEvent::Dropped(why)),
        }
    }
}

async fn read_stderr<R: AsyncRead + Unpin>(common: Arc<Common>, stderr: R) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        match read_line(&mut reader, &mut buf, 64 << 10).await {
            Ok(Line::Text) => {
                let text = String::from_utf8_lossy(&buf);
                common.event(UpstreamEvent::Stderr(
                    text.trim_end_matches('\r').to_string(),
                ));
            }
            Ok(Line::TooLong(n)) => {
                common.event(UpstreamEvent::Stderr(format!(
                    "[a stderr line of {n} bytes was skipped]"
                )));
            }
            Ok(Line::Eof) | Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn read_line_bounds_length() {
        let data: &[u8] = b"short\nthis line is too long\n\nlast";
        let mut r = BufReader::with_capacity(4, data);
        let mut buf = Vec::new();
        assert!(matches!(
            read_line(&mut r, &mut buf, 8).await.unwrap(),
            Line::Text
        ));
        assert_eq!(buf, b"short");
        assert!(matches!(
            read_line(&mut r, &mut buf, 8).await.unwrap(),
            Line::TooLong(21)
        ));
        assert!(matches!(
            read_line(&mut r, &mut buf, 8).await.unwrap(),
            Line::Text
        ));
        assert!(buf.is_empty());
        assert!(matches!(
            read_line(&mut r, &mut buf, 8).await.unwrap(),
            Line::Text
        ));
        assert_eq!(buf, b"last");
        assert!(matches!(
            read_line(&mut r, &mut buf, 8).await.unwrap(),
            Line::Eof
        ));
    }
}
