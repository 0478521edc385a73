//! Spreading agent connections over the connection workers: whoever accepts a connection
//! hands it to the worker serving the fewest.
//!
//! All workers poll one listening socket and the kernel lets whichever is quickest accept.
//! Under load that is the worker already awake, so one worker took nearly every connection
//! and the others sat idle (BENCHMARKS.md, round 5). Counting open connections per worker
//! and handing each new one to the least loaded keeps them even, on Linux and FreeBSD alike
//! (no `SO_REUSEPORT` semantics needed). A hand-off happens once per connection, never per
//! request: the stream leaves one worker's reactor and joins another's, and that worker is
//! woken once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// A connection on its way to the worker that will serve it.
pub struct Arrival {
    /// The accepted socket, non-blocking, registered with no reactor.
    pub stream: std::net::TcpStream,
    pub peer: SocketAddr,
    /// Its place under `listen.max_connections`, held until the connection ends.
    pub permit: OwnedSemaphorePermit,
    /// Its place in the receiving worker's count, held until the connection ends.
    pub seat: Seat,
}

/// Open connections per worker, and a way to reach each worker.
pub struct Balancer {
    open: Box<[AtomicUsize]>,
    inboxes: Box<[UnboundedSender<Arrival>]>,
}

/// One open connection counted against one worker; the count drops with it.
pub struct Seat {
    balancer: Arc<Balancer>,
    worker: usize,
}

impl Seat {
    /// The worker this connection is counted against.
    pub fn worker(&self) -> usize {
        self.worker
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.balancer.open[self.worker].fetch_sub(1, Ordering::Relaxed);
    }
}

impl Balancer {
    /// A balancer for `workers` workers (at least one), and each worker's inbox, in order.
    pub fn new(workers: usize) -> (Arc<Balancer>, Vec<UnboundedReceiver<Arrival>>) {
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..workers.max(1)).map(|_| unbounded_channel()).unzip();
        let balancer = Balancer {
            open: senders.iter().map(|_| AtomicUsize::new(0)).collect(),
            inboxes: senders.into_boxed_slice(),
        };
        (Arc::new(balancer), receivers)
    }

    /// Counts a new connection against the least loaded worker (`me`, the worker that
    /// accepted it, when it is among the least loaded) and returns that seat.
    pub fn seat_for_new(self: &Arc<Self>, me: usize) -> Seat {
        let loads = self.open.iter().map(|n| n.load(Ordering::Relaxed));
        self.seat(least_loaded(loads, me))
    }

    /// Counts one connection against `worker`.
    pub fn seat(self: &Arc<Self>, worker: usize) -> Seat {
        let worker = worker.min(self.open.len() - 1);
        self.open[worker].fetch_add(1, Ordering::Relaxed);
        Seat {
            balancer: self.clone(),
            worker,
        }
    }

    /// Sends `arrival` to the worker of its seat. Gives it back when that worker has stopped
    /// taking connections (shutdown), so the caller can serve it itself.
    pub fn hand_off(&self, arrival: Arrival) -> Result<(), Box<Arrival>> {
        let inbox = &self.inboxes[arrival.seat.worker];
        inbox.send(arrival).map_err(|e| Box::new(e.0))
    }

    /// Open connections per worker, in worker order.
    pub fn open_connections(&self) -> Vec<usize> {
        self.open
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }
}

/// The index of the smallest load; `me` wins ties, then the lowest index.
fn least_loaded(loads: impl Iterator<Item = usize>, me: usize) -> usize {
    let mut best: Option<(usize, usize)> = None;
    for (index, load) in loads.enumerate() {
        let better = match best {
            None => true,
            Some((_, least)) => load < least || (load == least && index == me),
        };
        if better {
            best = Some((index, load));
        }
    }
    best.map_or(0, |(index, _)| index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn least_loaded_prefers_the_accepting_worker_on_a_tie() {
        assert_eq!(least_loaded([0, 0, 0].into_iter(), 1), 1);
        assert_eq!(least_loaded([2, 1, 1].into_iter(), 0), 1);
        assert_eq!(least_loaded([2, 1, 1].into_iter(), 2), 2);
        assert_eq!(least_loaded([3, 4, 0, 0].into_iter(), 0), 2);
        assert_eq!(least_loaded([5].into_iter(), 0), 0);
        assert_eq!(least_loaded(std::iter::empty(), 0), 0);
    }

    #[test]
    fn connections_alternate_and_seats_free_their_worker() {
        let (balancer, _inboxes) = Balancer::new(2);
        let first = balancer.seat_for_new(0);
        let second = balancer.seat_for_new(0);
        let third = balancer.seat_for_new(0);
        assert_eq!([first.worker(), second.worker(), third.worker()], [0, 1, 0]);
        assert_eq!(balancer.open_connections(), [2, 1]);
        drop(second);
        assert_eq!(balancer.open_connections(), [2, 0]);
        // Worker 1 now has room: even a connection worker 0 accepts goes there.
        assert_eq!(balancer.seat_for_new(0).worker(), 1);
        drop((first, third));
        assert_eq!(balancer.open_connections(), [0, 0]);
    }

    /// Accepts one connection on a fresh loopback listener; returns both ends.
    fn pair() -> (std::net::TcpStream, std::net::TcpStream, SocketAddr) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, peer) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("nonblocking");
        (client, server, peer)
    }

    #[test]
    fn a_handed_off_stream_is_served_by_the_other_runtime() {
        let (balancer, mut inboxes) = Balancer::new(2);
        let slots = Arc::new(tokio::sync::Semaphore::new(1));
        let (mut client, server, peer) = pair();
        let mut inbox = inboxes.remove(1);
        let worker = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let arrival = inbox.recv().await.expect("an arrival");
                assert_eq!(arrival.seat.worker(), 1);
                let mut stream = tokio::net::TcpStream::from_std(arrival.stream).expect("register");
                let mut buf = [0u8; 4];
                stream.read_exact(&mut buf).await.expect("read");
                stream.write_all(&buf).await.expect("write");
            });
        });
        let permit = slots.try_acquire_owned().expect("a slot");
        let seat = balancer.seat(1);
        let arrival = Arrival {
            stream: server,
            peer,
            permit,
            seat,
        };
        assert!(balancer.hand_off(arrival).is_ok());
        client.write_all(b"ping").expect("write");
        let mut echoed = [0u8; 4];
        client.read_exact(&mut echoed).expect("read");
        assert_eq!(&echoed, b"ping");
        worker.join().expect("worker thread");
        assert_eq!(balancer.open_connections(), [0, 0]);
    }

    #[test]
    fn a_stopped_worker_gives_the_connection_back() {
        let (balancer, mut inboxes) = Balancer::new(2);
        drop(inboxes.remove(1));
        let slots = Arc::new(tokio::sync::Semaphore::new(1));
        let (_client, server, peer) = pair();
        let arrival = Arrival {
            stream: server,
            peer,
            permit: slots.try_acquire_owned().expect("a slot"),
            seat: balancer.seat(1),
        };
        let back = balancer.hand_off(arrival).expect_err("worker 1 is gone");
        assert_eq!(back.peer, peer);
    }
}
