//! Accepting agents: TCP, the connection cap, TLS handshake, then HTTP/1.1 or h2 (ALPN).
//!
//! Limits that protect the gateway from a flood live here, before any byte is parsed as
//! MCP: a connection cap (connections beyond it are closed at once), a deadline for the TLS
//! handshake and for request headers, header-size caps for both HTTP versions, and a cap on
//! concurrent h2 streams per connection. Which worker serves a connection is decided here
//! too, with [`super::balance`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::{OwnedSemaphorePermit, watch};

use crate::audit::Severity;
use crate::identity::PeerCert;

use super::Shared;
use super::auth::ConnectionAuth;
use super::balance::{Arrival, Balancer, Seat};
use super::http::{Connection, handle};

/// Connections refused because the cap was reached (reported in the log, then reset).
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// One worker's place among the workers: its index, the shared [`Balancer`] and its inbox of
/// connections other workers accepted for it.
pub struct WorkerSeat {
    pub index: usize,
    pub balancer: Arc<Balancer>,
    pub inbox: UnboundedReceiver<Arrival>,
}

/// Accepts until `shutdown` turns true, then lets open requests finish. Every worker runs
/// one of these on the shared sockets (one per listen address); the connection cap counts
/// all of them, and each new connection is served by the worker with the fewest
/// (`balance`).
pub async fn serve(
    shared: Arc<Shared>,
    listeners: Vec<TcpListener>,
    mut shutdown: watch::Receiver<bool>,
    mut me: WorkerSeat,
) {
    let graceful = GracefulShutdown::new();
    let mut first = 0;
    loop {
        let accepted = tokio::select! {
            a = accept_any(&listeners, &mut first) => a,
            Some(arrival) = me.inbox.recv() => {
                serve_arrival(&shared, &graceful, arrival);
                continue;
            }
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                shared
                    .auditor
                    .event(Severity::Error, format!("fault=accept error={e:?}"));
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = shared.connection_slots.clone().try_acquire_owned() else {
            if REFUSED.fetch_add(1, Ordering::Relaxed).is_multiple_of(100) {
                shared.auditor.event(
                    Severity::Warning,
                    format!(
                        "limit=connections max={} src={} (refusing connections; logged once per 100)",
                        shared.listen.max_connections,
                        peer.ip()
                    ),
                );
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let seat = me.balancer.seat_for_new(me.index);
        if seat.worker() == me.index {
            spawn_connection(&shared, &graceful, stream, peer, (permit, seat));
            continue;
        }
        // Another worker has fewer connections: it gets this one. `into_std` leaves the
        // socket non-blocking, as its new reactor needs it.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                // The socket could not leave this worker's reactor; it is closed.
                shared
                    .auditor
                    .event(Severity::Error, format!("fault=handoff error={e:?}"));
                continue;
            }
        };
        let arrival = Arrival {
            stream,
            peer,
            permit,
            seat,
        };
        if let Err(back) = me.balancer.hand_off(arrival) {
            // That worker is shutting down: serve it here (the old seat is freed).
            let mut arrival = *back;
            arrival.seat = me.balancer.seat(me.index);
            serve_arrival(&shared, &graceful, arrival);
        }
    }
    drop(listeners);
    // From here a worker still accepting serves what it accepts itself. Hand-offs still
    // queued are closed unserved, like any connection not yet read when a shutdown begins.
    drop(me.inbox);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
    }
}

/// The next connection on any of `listeners`. They are polled in turn from `first`, which
/// moves on after each connection, so a flood on one address cannot starve the others.
async fn accept_any(
    listeners: &[TcpListener],
    first: &mut usize,
) -> std::io::Result<(TcpStream, SocketAddr)> {
    std::future::poll_fn(|cx| {
        let n = listeners.len();
        for k in 0..n {
            let index = (*first + k) % n;
            if let std::task::Poll::Ready(accepted) = listeners[index].poll_accept(cx) {
                *first = (index + 1) % n;
                return std::task::Poll::Ready(accepted);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Serves a connection another worker accepted (or handed back) on this worker.
fn serve_arrival(shared: &Arc<Shared>, graceful: &GracefulShutdown, arrival: Arrival) {
    let Arrival {
        stream,
        peer,
        permit,
        seat,
    } = arrival;
    // Registering with this worker's reactor fails only when it is out of resources; the
    // connection is then closed, and its permit and seat freed.
    if let Ok(stream) = TcpStream::from_std(stream) {
        spawn_connection(shared, graceful, stream, peer, (permit, seat));
    }
}

/// Runs one connection on this worker; `held` (its permit and seat) is freed when it ends.
fn spawn_connection(
    shared: &Arc<Shared>,
    graceful: &GracefulShutdown,
    stream: TcpStream,
    peer: SocketAddr,
    held: (OwnedSemaphorePermit, Seat),
) {
    let shared = shared.clone();
    let watcher = graceful.watcher();
    tokio::spawn(async move {
        connection(shared, stream, peer, watcher).await;
        drop(held);
    });
}

async fn connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let source = peer.ip().to_canonical();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.listen.header_read_timeout)
        .max_buf_size(shared.listen.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(shared.listen.max_header_bytes as u32)
        .max_concurrent_streams(64);
    // The client certificate (if any) is verified in the handshake and fixed for the
    // connection; every request on it carries the certificate's names to authentication.
    let service = |peer: Option<Arc<PeerCert>>| {
        let shared = shared.clone();
        let auth = Arc::new(ConnectionAuth::default());
        service_fn(move |req| {
            let shared = shared.clone();
            let peer = peer.clone();
            let auth = auth.clone();
            async move {
                let on = Connection {
                    source,
                    peer: peer.as_deref(),
                    auth: &auth,
                };
                handle(&shared, req, &on).await
            }
        })
    };
    let (tls, trust) = {
        let runtime = shared.runtime.load();
        (runtime.tls.clone(), runtime.client_trust.clone())
    };
    match tls {
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let handshake =
                tokio::time::timeout(shared.listen.header_read_timeout, acceptor.accept(stream))
                    .await;
            let tls_stream = match handshake {
                Ok(Ok(s)) => s,
                // Failed or slow handshakes are the client's problem and too common to log
                // one by one (scanners); they never reach the request path.
                Ok(Err(_)) | Err(_) => return,
            };
            let peer = match (trust, tls_stream.get_ref().1.peer_certificates()) {
                (Some(trust), Some(chain)) if !chain.is_empty() => {
                    match trust.verified_names(chain) {
                        Ok(names) => Some(Arc::new(PeerCert {
                            names,
                            trust: trust.id,
                        })),
                        Err(e) => {
                            // client_auth = "optional": the connection stays, the
                            // certificate names nobody.
                            shared.auditor.event(
                                Severity::Notice,
                                format!("auth=cert-untrusted src={source} error={e:?}"),
                            );
                            None
                        }
                    }
                }
                _ => None,
            };
            let conn = builder.serve_connection(TokioIo::new(tls_stream), service(peer));
            let _ = watcher.watch(conn.into_owned()).await;
        }
        None => {
            let conn = builder.serve_connection(TokioIo::new(stream), service(None));
            let _ = watcher.watch(conn.into_owned()).await;
        }
    }
}
