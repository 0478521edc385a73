//! TLS for agents: PEM files -> a rustls server config (ring, TLS 1.2 and 1.3, h2 + HTTP/1.1).
//!
//! Only rustls's default cipher suites for the ring provider are offered: AEAD suites with
//! forward secrecy. TLS 1.0/1.1, RC4, CBC and static-RSA suites are not implemented by rustls
//! at all, so there is nothing to turn off.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsFiles;

/// Reads the certificate chain and key and builds the server config.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, String> {
    let certs = read_certs(&files.cert)?;
    let key = read_key(&files.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "{} and {} do not form a usable certificate and key: {e}",
                files.cert.display(),
                files.key.display()
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read certificate {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate {} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "certificate {} holds no PEM \"BEGIN CERTIFICATE\" block",
            path.display()
        ));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read private key {}: {e}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        format!(
            "private key {} holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}",
            path.display()
        )
    })
}

/// A self-signed certificate for `names`, as PEM (certificate, key). For the demo, tests and
/// trying mcpgw out; production uses a certificate from the OPNsense trust store.
pub fn self_signed(names: &[&str]) -> Result<(String, String), String> {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let certified = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("cannot make a certificate: {e}"))?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_are_named() {
        let dir = std::env::temp_dir().join(format!("mcpgw-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = self_signed(&["localhost"]).unwrap();
        let good = TlsFiles {
            cert: dir.join("c.pem"),
            key: dir.join("k.pem"),
        };
        std::fs::write(&good.cert, &cert).unwrap();
        std::fs::write(&good.key, &key).unwrap();
        assert!(server_config(&good).is_ok());

        std::fs::write(dir.join("garbage.pem"), "not pem at all").unwrap();
        let bad = TlsFiles {
            cert: dir.join("garbage.pem"),
            key: good.key.clone(),
        };
        let err = server_config(&bad).unwrap_err();
        assert!(
            err.contains("garbage.pem") && err.contains("BEGIN CERTIFICATE"),
            "{err}"
        );

        let bad = TlsFiles {
            cert: good.cert.clone(),
            key: dir.join("garbage.pem"),
        };
        assert!(server_config(&bad).unwrap_err().contains("private key"));

        let missing = TlsFiles {
            cert: dir.join("nope.pem"),
            key: good.key.clone(),
        };
        assert!(
            server_config(&missing)
                .unwrap_err()
                .contains("cannot read certificate")
        );

        // A key that does not match the certificate.
        let (_, other_key) = self_signed(&["localhost"]).unwrap();
        std::fs::write(dir.join("k2.pem"), other_key).unwrap();
        let mismatched = TlsFiles {
            cert: good.cert.clone(),
            key: dir.join("k2.pem"),
        };
        assert!(
            server_config(&mismatched)
                .unwrap_err()
                .contains("do not form")
        );
    }
}
