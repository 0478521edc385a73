//! Connection workers: threads that each run a single-threaded tokio runtime and accept and
//! serve their own agent connections, start to finish.
//!
//! Why not one multi-threaded runtime: with work stealing, a request read on one thread had
//! its upstream answer woken on the other, so every call paid a futex wake-up and a context
//! switch; on a 2-core box that was a fifth of the gateway's added latency (BENCHMARKS.md).
//! Here a connection, its requests and the upstream connections they use (the HTTP upstream
//! pool keeps idle connections per thread) stay on one thread. All workers poll the same
//! listening sockets (one per listen address); the worker that accepts a connection hands it to the one with the fewest open
//! (`balance`), since the kernel tends to let one busy worker accept them all.
//!
//! The main runtime keeps what is process-wide: signals, reloads, housekeeping, upstream
//! event reports, and the stdio child's readers and stdin backlog writer (calls write their
//! own lines into stdin while the pipe has room).

use std::sync::Arc;

use tokio::sync::{oneshot, watch};

use super::Shared;
use super::balance::Balancer;
use super::listener::{self, WorkerSeat};

/// Most workers picked automatically: the gateway shares its box with the firewall, and
/// agents' traffic never needs more.
const AUTO_MAX: usize = 4;

/// The number of workers for `configured` (`listen.workers`; 0 picks one per core).
pub fn count(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, AUTO_MAX)
}

/// Running workers; [`Workers::join`] waits until they have stopped.
pub struct Workers {
    /// One per worker: its result, sent as its thread ends.
    results: Vec<oneshot::Receiver<Result<(), String>>>,
}

/// Starts `count` workers on clones of `listeners` (bound, non-blocking sockets) and returns
/// once every one of them is accepting. They stop accepting when `stop` turns true and end
/// once their open requests have finished. If one cannot start, the others are stopped and
/// waited for, and its error is returned.
pub async fn start(
    shared: &Arc<Shared>,
    listeners: &[std::net::TcpListener],
    count: usize,
    stop: &watch::Sender<bool>,
) -> Result<Workers, String> {
    let mut workers = Workers {
        results: Vec::with_capacity(count),
    };
    let mut ready = Vec::with_capacity(count);
    let (balancer, inboxes) = Balancer::new(count);
    for (index, inbox) in inboxes.into_iter().enumerate() {
        let seat = WorkerSeat {
            index,
            balancer: balancer.clone(),
            inbox,
        };
        match spawn(seat, shared, listeners, stop.subscribe()) {
            Ok((ready_rx, result_rx)) => {
                ready.push(ready_rx);
                workers.results.push(result_rx);
            }
            Err(e) => return Err(workers.abandon(stop, e).await),
        }
    }
    for (index, ready) in ready.into_iter().enumerate() {
        if ready.await.is_err() {
            // It ended before it could accept; its result says why.
            let why = match workers.results.swap_remove(index).await {
                Ok(Err(e)) => e,
                _ => "it stopped unexpectedly".to_string(),
            };
            let e = format!("connection worker {index} did not start: {why}");
            return Err(workers.abandon(stop, e).await);
        }
    }
    Ok(workers)
}

type Spawned = (oneshot::Receiver<()>, oneshot::Receiver<Result<(), String>>);

/// Starts the thread of the worker in `seat`; returns when it is accepting and when it has
/// ended.
fn spawn(
    seat: WorkerSeat,
    shared: &Arc<Shared>,
    listeners: &[std::net::TcpListener],
    stop: watch::Receiver<bool>,
) -> Result<Spawned, String> {
    let index = seat.index;
    let sockets = listeners
        .iter()
        .map(std::net::TcpListener::try_clone)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot share the listening sockets with worker {index}: {e}"))?;
    let (ready_tx, ready_rx) = oneshot::channel();
    let (result_tx, result_rx) = oneshot::channel();
    let shared = shared.clone();
    std::thread::Builder::new()
        .name(format!("mcpgw-worker-{index}"))
        .spawn(move || {
            let _ = result_tx.send(run_worker(shared, sockets, stop, seat, ready_tx));
        })
        .map_err(|e| format!("cannot start connection worker {index}: {e}"))?;
    Ok((ready_rx, result_rx))
}

/// One worker's life: its own runtime, its own accept loop on the shared sockets.
fn run_worker(
    shared: Arc<Shared>,
    sockets: Vec<std::net::TcpListener>,
    stop: watch::Receiver<bool>,
    seat: WorkerSeat,
    ready: oneshot::Sender<()>,
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a worker runtime: {e}"))?;
    runtime.block_on(async move {
        let listeners = sockets
            .into_iter()
            .map(tokio::net::TcpListener::from_std)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("cannot watch the listening sockets: {e}"))?;
        let _ = ready.send(());
        tokio::spawn(keep_timer_near());
        listener::serve(shared, listeners, stop, seat).await;
        Ok(())
    })
}

/// Keeps a timer that expires within a second armed on this worker, forever.
///
/// tokio's timer wakes its own driver (an eventfd write, then an extra epoll event) whenever
/// a timer is armed to expire before every other one, and hyper re-arms the header-read
/// timer for every request. With this tick always sooner, those re-arms cost no syscall: one
/// fewer write and one fewer wake-up per request. It costs each worker one wake-up a second,
/// and saves nothing when `header_read_timeout_ms` is under a second.
async fn keep_timer_near() {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
    }
}

impl Workers {
    /// Waits for every worker to end; the errors of those that failed, one per line.
    pub async fn join(self) -> Result<(), String> {
        let mut errors = Vec::new();
        for (index, result) in self.results.into_iter().enumerate() {
            match result.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(format!("worker {index}: {e}")),
                // The thread ended without reporting: it panicked (tests; release aborts).
                Err(_) => errors.push(format!("worker {index} stopped unexpectedly")),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n"))
        }
    }

    /// Stops the workers started so far and waits for them; returns `error` (the reason).
    async fn abandon(self, stop: &watch::Sender<bool>, error: String) -> String {
        let _ = stop.send(true);
        let _ = self.join().await;
        error
    }
}
