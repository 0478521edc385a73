//! TLS for agents: PEM files -> a rustls server config (ring, TLS 1.2 and 1.3, h2 + HTTP/1.1).
//!
//! Only rustls's default cipher suites for the ring provider are offered: AEAD suites with
//! forward secrecy. TLS 1.0/1.1, RC4, CBC and static-RSA suites are not implemented by rustls
//! at all, so there is nothing to turn off.
//!
//! With `[listen] client_ca`, agents may (`client_auth = "optional"`) or must (`"required"`)
//! present a certificate issued by that CA bundle. rustls's webpki verifier checks the chain
//! and the clientAuth usage: in the handshake when required (no valid certificate, no
//! connection), and right after it when optional, so that a certificate from another CA
//! leaves the connection open but names no identity. Either way the handshake proves the
//! agent holds the certificate's key, and only a chain verified by [`ClientTrust`] yields
//! names (DNS SAN entries, else the subject CN) for authentication.

use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DistinguishedName, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use crate::config::{ClientCaFile, TlsFiles};
use crate::identity::TrustId;

/// Reads the certificate chain and key (and the client CA, if any) and builds the server
/// config.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, String> {
    load(files).map(|(config, _)| config)
}

/// Like [`server_config`], also returning the client CA bundle the config trusts (read once,
/// so it is the very bundle the handshake uses).
pub fn load(files: &TlsFiles) -> Result<(Arc<ServerConfig>, Option<Arc<ClientTrust>>), String> {
    let certs = read_certs(&files.cert)?;
    let key = read_key(&files.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let (builder, trust) = match &files.client_ca {
        None => (builder.with_no_client_auth(), None),
        Some(ca) => {
            let trust = client_trust(ca, provider)?;
            let handshake: Arc<dyn ClientCertVerifier> = if ca.required {
                trust.verifier.clone()
            } else {
                Arc::new(ProveKeyOnly {
                    inner: trust.verifier.clone(),
                })
            };
            (
                builder.with_client_cert_verifier(handshake),
                Some(Arc::new(trust)),
            )
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "{} and {} do not form a usable certificate and key: {e}",
            files.cert.display(),
            files.key.display()
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((Arc::new(config), trust))
}

/// The CA bundle agents' certificates are verified against.
#[derive(Debug)]
pub struct ClientTrust {
    /// Names the bundle (SHA-256 over its certificates).
    pub id: TrustId,
    /// Chain and clientAuth-usage checks against the bundle.
    verifier: Arc<dyn ClientCertVerifier>,
}

impl ClientTrust {
    /// The names of the certificate chain a client presented in the handshake (leaf first),
    /// if it chains to this bundle and may be used for client authentication; `Err` says
    /// why not. Only names from here may identify anyone.
    pub fn verified_names(&self, chain: &[CertificateDer<'_>]) -> Result<Vec<Box<str>>, String> {
        let (leaf, intermediates) = chain
            .split_first()
            .ok_or_else(|| "no certificate".to_string())?;
        self.verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map_err(|e| e.to_string())?;
        Ok(cert_names(leaf))
    }
}

/// The verifier for agents' certificates and the name of the CA bundle it trusts.
fn client_trust(
    ca: &ClientCaFile,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<ClientTrust, String> {
    let certs = read_certs(&ca.file)?;
    let mut roots = rustls::RootCertStore::empty();
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    for cert in certs {
        digest.update(&(cert.len() as u64).to_be_bytes());
        digest.update(&cert);
        roots.add(cert).map_err(|e| {
            format!(
                "client_ca {} holds a certificate that cannot be a trust anchor: {e}",
                ca.file.display()
            )
        })?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| format!("client_ca {}: {e}", ca.file.display()))?;
    let mut id = [0u8; 32];
    id.copy_from_slice(digest.finish().as_ref());
    Ok(ClientTrust { id, verifier })
}

/// The handshake side of `client_auth = "optional"`: asks for a certificate and checks that
/// the client holds its key (the CertificateVerify signature), but takes any chain, so a
/// certificate from another CA does not cost the agent its connection. The chain is judged
/// afterwards by [`ClientTrust::verified_names`]; nothing else reads the peer certificate.
#[derive(Debug)]
struct ProveKeyOnly {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for ProveKeyOnly {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The names a client certificate is issued for, lowercase: its DNS SAN entries, or, when it
/// has none, its subject CN (when the subject has exactly one, as a UTF8String,
/// PrintableString or IA5String). Wildcard SAN entries come back as written (`*.example.net`)
/// and so never equal an identity's `client_cert`. Empty when the certificate cannot be read.
pub fn cert_names(cert: &CertificateDer<'_>) -> Vec<Box<str>> {
    let Ok(parsed) = webpki::EndEntityCert::try_from(cert) else {
        return Vec::new();
    };
    let dns: Vec<Box<str>> = parsed
        .valid_dns_names()
        .map(|n| n.to_ascii_lowercase().into_boxed_str())
        .collect();
    if !dns.is_empty() {
        return dns;
    }
    subject_cn(parsed.subject())
        .map(|cn| vec![cn.to_ascii_lowercase().into_boxed_str()])
        .unwrap_or_default()
}

/// The one common name of a DER `Name` (its contents, without the outer SEQUENCE header).
fn subject_cn(name: &[u8]) -> Option<&str> {
    const CN_OID: &[u8] = &[0x55, 0x04, 0x03];
    let mut found = None;
    let mut rdns = name;
    while !rdns.is_empty() {
        let (set, rest) = der_tlv(rdns, 0x31)?;
        rdns = rest;
        let mut atvs = set;
        while !atvs.is_empty() {
            let (atv, rest) = der_tlv(atvs, 0x30)?;
            atvs = rest;
            let (oid, value) = der_tlv(atv, 0x06)?;
            if oid != CN_OID {
                continue;
            }
            let tag = *value.first()?;
            if !matches!(tag, 0x0c | 0x13 | 0x16) {
                return None;
            }
            let (text, rest) = der_tlv(value, tag)?;
            if !rest.is_empty() || found.is_some() {
                // Trailing bytes, or a second CN: which name is meant is not clear.
                return None;
            }
            found = Some(std::str::from_utf8(text).ok()?);
        }
    }
    found
}

/// One DER element with tag `tag` at the start of `input`: (its contents, what follows).
/// Definite lengths up to 0xFFFF only (names are far smaller).
fn der_tlv(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = input.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81 => {
            let (&b, rest) = rest.split_first()?;
            (usize::from(b), rest)
        }
        0x82 => {
            let bytes = rest.get(..2)?;
            (
                usize::from(bytes[0]) << 8 | usize::from(bytes[1]),
                rest.get(2..)?,
            )
        }
        _ => return None,
    };
    Some((rest.get(..len)?, rest.get(len..)?))
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

    fn cert_with(params: rcgen::CertificateParams) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    fn strs(names: &[Box<str>]) -> Vec<&str> {
        names.iter().map(|n| &**n).collect()
    }

    #[test]
    fn names_come_from_dns_sans_else_the_cn() {
        use rcgen::{CertificateParams, DnType, SanType};
        // DNS SANs, lowercased; wildcards stay as written; IP SANs are not names.
        let mut p = CertificateParams::new(vec![
            "Agent1.Example.NET".to_string(),
            "*.example.net".to_string(),
        ])
        .unwrap();
        p.subject_alt_names
            .push(SanType::IpAddress("192.0.2.1".parse().unwrap()));
        p.distinguished_name.push(DnType::CommonName, "ignored-cn");
        assert_eq!(
            strs(&cert_names(&cert_with(p))),
            ["agent1.example.net", "*.example.net"]
        );

        // No SAN at all: the CN.
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(DnType::OrganizationName, "Example");
        p.distinguished_name
            .push(DnType::CommonName, "Agent2.example.net");
        assert_eq!(strs(&cert_names(&cert_with(p))), ["agent2.example.net"]);

        // An IP SAN only: no DNS names, so the CN.
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names
            .push(SanType::IpAddress("192.0.2.1".parse().unwrap()));
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, "agent3");
        assert_eq!(strs(&cert_names(&cert_with(p))), ["agent3"]);

        // Neither: no names.
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        assert!(cert_names(&cert_with(p)).is_empty());

        // Not a certificate: no names, no panic.
        assert!(cert_names(&CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01])).is_empty());
    }

    #[test]
    fn subject_cn_walk() {
        // SET { SEQ { OID 2.5.4.3, UTF8String "a" } }
        let cn = |tag: u8, text: &[u8]| {
            let mut atv = vec![0x06, 0x03, 0x55, 0x04, 0x03, tag, text.len() as u8];
            atv.extend_from_slice(text);
            let mut seq = vec![0x30, atv.len() as u8];
            seq.extend(atv);
            let mut set = vec![0x31, seq.len() as u8];
            set.extend(seq);
            set
        };
        assert_eq!(subject_cn(&cn(0x0c, b"agent")), Some("agent"));
        assert_eq!(subject_cn(&cn(0x13, b"agent")), Some("agent"));
        // BMPString and friends are not read; two CNs are ambiguous.
        assert_eq!(subject_cn(&cn(0x1e, b"\0a")), None);
        assert_eq!(subject_cn(&[cn(0x0c, b"a"), cn(0x0c, b"b")].concat()), None);
        assert_eq!(subject_cn(&cn(0x0c, b"\xff")), None);
        // Every truncation is refused without a panic.
        let whole = cn(0x0c, b"agent1.example.net");
        for end in 1..whole.len() {
            assert_eq!(subject_cn(&whole[..end]), None, "{end}");
        }
        // Long-form lengths.
        let long = b"x".repeat(200);
        let mut atv = vec![0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x81, 200];
        atv.extend_from_slice(&long);
        let mut seq = vec![0x30, 0x81, atv.len() as u8];
        seq.extend(atv);
        let mut set = vec![0x31, 0x81, seq.len() as u8];
        set.extend(seq);
        assert_eq!(subject_cn(&set).map(str::len), Some(200));
    }

    #[test]
    fn client_ca_bundles_are_named_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(&["localhost"]).unwrap();
        let (ca1, _) = self_signed(&["ca1"]).unwrap();
        let (ca2, _) = self_signed(&["ca2"]).unwrap();
        std::fs::write(dir.path().join("c.pem"), &cert).unwrap();
        std::fs::write(dir.path().join("k.pem"), &key).unwrap();
        std::fs::write(dir.path().join("ca1.pem"), &ca1).unwrap();
        std::fs::write(dir.path().join("ca2.pem"), &ca2).unwrap();
        std::fs::write(dir.path().join("empty.pem"), "").unwrap();
        let files = |ca: Option<&str>| TlsFiles {
            cert: dir.path().join("c.pem"),
            key: dir.path().join("k.pem"),
            client_ca: ca.map(|f| ClientCaFile {
                file: dir.path().join(f),
                required: true,
            }),
        };
        let id = |ca| load(&files(ca)).unwrap().1.map(|t| t.id);
        assert_eq!(id(None), None);
        let t1 = id(Some("ca1.pem")).unwrap();
        assert_eq!(id(Some("ca1.pem")), Some(t1));
        assert_ne!(id(Some("ca2.pem")), Some(t1));
        let err = load(&files(Some("empty.pem"))).unwrap_err();
        assert!(err.contains("empty.pem"), "{err}");
        let err = load(&files(Some("missing.pem"))).unwrap_err();
        assert!(err.contains("missing.pem"), "{err}");
    }

    #[test]
    fn bad_files_are_named() {
        let dir = std::env::temp_dir().join(format!("mcpgw-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = self_signed(&["localhost"]).unwrap();
        let good = TlsFiles {
            cert: dir.join("c.pem"),
            key: dir.join("k.pem"),
            client_ca: None,
        };
        std::fs::write(&good.cert, &cert).unwrap();
        std::fs::write(&good.key, &key).unwrap();
        assert!(server_config(&good).is_ok());

        std::fs::write(dir.join("garbage.pem"), "not pem at all").unwrap();
        let bad = TlsFiles {
            cert: dir.join("garbage.pem"),
            key: good.key.clone(),
            client_ca: None,
        };
        let err = server_config(&bad).unwrap_err();
        assert!(
            err.contains("garbage.pem") && err.contains("BEGIN CERTIFICATE"),
            "{err}"
        );

        let bad = TlsFiles {
            cert: good.cert.clone(),
            key: dir.join("garbage.pem"),
            client_ca: None,
        };
        assert!(server_config(&bad).unwrap_err().contains("private key"));

        let missing = TlsFiles {
            cert: dir.join("nope.pem"),
            key: good.key.clone(),
            client_ca: None,
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
            client_ca: None,
        };
        assert!(
            server_config(&mismatched)
                .unwrap_err()
                .contains("do not form")
        );
    }
}
