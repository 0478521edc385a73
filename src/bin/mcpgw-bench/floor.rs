//! The floor: the least a TLS-terminating gateway can do. Accept, TLS handshake (the same
//! rustls config mcpgw builds), connect to the upstream, copy bytes both ways. No HTTP parsing,
//! no policy, no logging.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// A forwarder threaded the way mcpgw is: as many threads as mcpgw's default workers, each a
/// single-threaded runtime accepting on one shared socket and serving its connections itself.
pub struct Floor {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Floor {
    /// `workers`: threads, counted as mcpgw counts its `listen.workers` (0: one per core).
    pub fn start(
        config: Arc<rustls::ServerConfig>,
        upstream: SocketAddr,
        workers: usize,
    ) -> Result<Floor, String> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| e.to_string())?;
        let addr = std_listener.local_addr().map_err(|e| e.to_string())?;
        let acceptor = TlsAcceptor::from(config);
        let (stop, _) = watch::channel(false);
        let mut threads = Vec::new();
        for _ in 0..mcpgw::server::workers::count(workers) {
            let socket = std_listener.try_clone().map_err(|e| e.to_string())?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let (acceptor, mut stopped) = (acceptor.clone(), stop.subscribe());
            let thread = std::thread::Builder::new()
                .name("floor".into())
                .spawn(move || {
                    runtime.block_on(async move {
                        let Ok(listener) = TcpListener::from_std(socket) else {
                            return;
                        };
                        tokio::select! {
                            _ = accept_loop(listener, acceptor, upstream) => {}
                            _ = stopped.wait_for(|s| *s) => {}
                        }
                    });
                })
                .map_err(|e| e.to_string())?;
            threads.push(thread);
        }
        Ok(Floor {
            addr,
            stop,
            threads,
        })
    }
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, upstream: SocketAddr) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            let Ok(mut up) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = up.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
        });
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
