//! The floor: the least a TLS-terminating gateway can do. Accept, TLS handshake (the same
//! rustls config mcpgw builds), connect to the upstream, copy bytes both ways. No HTTP parsing,
//! no policy, no logging.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// A forwarder on its own multi-thread runtime (2 workers, work stealing). mcpgw uses one
/// single-threaded runtime per core instead, so the floor pays a thread hand-off mcpgw avoids.
pub struct Floor {
    pub addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Floor {
    pub fn start(config: Arc<rustls::ServerConfig>, upstream: SocketAddr) -> Result<Floor, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("floor")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        // Bound here (std) and handed over: the caller may itself be inside a runtime.
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| e.to_string())?;
        let addr = std_listener.local_addr().map_err(|e| e.to_string())?;
        let acceptor = TlsAcceptor::from(config);
        runtime.spawn(async move {
            let Ok(listener) = TcpListener::from_std(std_listener) else {
                return;
            };
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
        });
        Ok(Floor {
            addr,
            runtime: Some(runtime),
        })
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
