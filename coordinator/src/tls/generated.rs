//! The coordinator's own CA and server certificate in `DATA_DIR/tls`: made on the first
//! start, reused after, the server certificate reissued when its names change or it nears
//! its end.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
    time::Duration,
};

use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use super::TlsSettings;
use crate::{
    error::{DroverError, Result},
    key_files::{fs_error, read_certs, read_key, write_file},
    pki::ca_params,
};

/// The generated CA's lifetime. Rotating it means enrolling the updaters again (they pin
/// it); a rotation without that is not built.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// The generated server certificate's lifetime (what browsers accept at most) …
const SERVER_VALIDITY: Duration = Duration::from_secs(397 * 24 * 3600);
/// … reissued at a start when less than this is left.
const SERVER_RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Clocks drift: certificates are valid from a little before they are made.
const BACKDATE: Duration = Duration::from_secs(3600);

/// `now .. now + validity`, backdated a little.
fn validity(params: &mut CertificateParams, lasts: Duration) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + lasts;
}

/// Whether the PEM certificate at `path` expires within `SERVER_RENEW_BEFORE` (or cannot
/// be read: then it is made again).
fn expires_soon(path: &Path) -> bool {
    let Ok(certs) = read_certs(path) else {
        return true;
    };
    let Some(Ok((_, cert))) = certs
        .first()
        .map(|c| x509_parser::parse_x509_certificate(c))
    else {
        return true;
    };
    let not_after = cert.validity().not_after.timestamp();
    let renew_at = time::OffsetDateTime::now_utc() + SERVER_RENEW_BEFORE;
    not_after < renew_at.unix_timestamp()
}

/// The generated CA and server certificate in `DATA_DIR/tls`, created or reused.
pub(super) fn generated(
    settings: &TlsSettings,
    listen: &[SocketAddr],
) -> Result<(
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
    PathBuf,
)> {
    let dir = settings.data_dir.join("tls");
    let ca_key = read_key(&dir.join("ca-key.pem"))?;
    let server_key = read_key(&dir.join("server-key.pem"))?;
    let sans = server_names(listen, &settings.extra_sans);
    let sans_file = dir.join("server-sans.txt");
    let wanted = sans.join("\n");
    let current = std::fs::read_to_string(&sans_file).ok();
    if current.as_deref() != Some(wanted.as_str())
        || !dir.join("server.pem").exists()
        || expires_soon(&dir.join("server.pem"))
    {
        let mut params = CertificateParams::new(sans.clone()).map_err(|err| {
            DroverError::invalid(format!(
                "cannot put these names in a certificate ({err}): {sans:?}; check --tls-san"
            ))
        })?;
        params
            .distinguished_name
            .push(DnType::CommonName, "drover-coordinator");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, SERVER_VALIDITY);
        let issuer = Issuer::new(ca_params(&ca_key), &ca_key);
        let cert = params.signed_by(&server_key, &issuer).map_err(|err| {
            DroverError::Internal(format!("signing the server certificate: {err}"))
        })?;
        write_file(&dir.join("server.pem"), cert.pem().as_bytes(), 0o644)?;
        write_file(&sans_file, wanted.as_bytes(), 0o644)?;
        tracing::info!(names = ?sans, "issued the coordinator's server certificate");
    }
    // The chain ends with the CA, so an enrolling updater can find the certificate its
    // `--ca-pin` names in the handshake itself.
    let mut chain = read_certs(&dir.join("server.pem"))?;
    chain.extend(read_certs(&dir.join("ca.pem"))?);
    let key = PrivateKeyDer::from_pem_file(dir.join("server-key.pem"))
        .map_err(|err| DroverError::Internal(format!("reading server-key.pem: {err}")))?;
    Ok((chain, key, dir.join("ca.pem")))
}

/// Creates the CA and the server key in a temporary directory, then renames it into place;
/// if another process got there first, its files win and ours are removed.
pub(super) fn create_ca(data_dir: &Path, dir: &Path) -> Result<()> {
    let tmp = data_dir.join(format!(".tls-{}", uuid::Uuid::new_v4()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .map_err(fs_error(&tmp))?;
    let ca_key = KeyPair::generate().map_err(|err| DroverError::Internal(err.to_string()))?;
    let server_key = KeyPair::generate().map_err(|err| DroverError::Internal(err.to_string()))?;
    let mut params = ca_params(&ca_key);
    validity(&mut params, CA_VALIDITY);
    let ca = params
        .self_signed(&ca_key)
        .map_err(|err| DroverError::Internal(format!("creating the CA: {err}")))?;
    write_file(
        &tmp.join("ca-key.pem"),
        ca_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_file(
        &tmp.join("server-key.pem"),
        server_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_file(&tmp.join("ca.pem"), ca.pem().as_bytes(), 0o644)?;
    if std::fs::rename(&tmp, dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
        if !dir.join("ca.pem").exists() {
            return Err(DroverError::invalid(format!(
                "cannot create {}; check that the data directory is writable",
                dir.display()
            )));
        }
    } else {
        tracing::info!(dir = %dir.display(), "created the coordinator's CA");
    }
    Ok(())
}

/// The server certificate's names: the listen addresses (unless unspecified), loopback,
/// `localhost` and the operator's extras; sorted, no duplicates.
fn server_names(listen: &[SocketAddr], extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = vec![
        "localhost".into(),
        IpAddr::V4(Ipv4Addr::LOCALHOST).to_string(),
        IpAddr::V6(Ipv6Addr::LOCALHOST).to_string(),
    ];
    names.extend(
        listen
            .iter()
            .filter(|addr| !addr.ip().is_unspecified())
            .map(|addr| addr.ip().to_string()),
    );
    names.extend(extra.iter().map(|name| name.trim().to_string()));
    names.retain(|name| !name.is_empty());
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::tls::load_or_create;

    #[test]
    fn names_cover_loopback_listen_addresses_and_extras() {
        let listen: Vec<SocketAddr> = vec![
            "0.0.0.0:7400".parse().unwrap(),
            "10.1.2.3:7401".parse().unwrap(),
        ];
        let names = server_names(&listen, &["drover.example".into(), " ".into()]);
        assert_eq!(
            names,
            [
                "10.1.2.3",
                "127.0.0.1",
                "::1",
                "drover.example",
                "localhost"
            ]
        );
    }

    /// #22 item 7: the generated certificates have bounded lifetimes (they ran from 1975 to
    /// 4096), and a server certificate near its end is reissued at start.
    #[test]
    fn generated_certificates_have_bounded_lifetimes_and_are_renewed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let settings = TlsSettings::generated_in(dir.path().join("data"));
        let listen = ["127.0.0.1:0".parse().unwrap()];
        load_or_create(&settings, &listen).unwrap();
        let tls = dir.path().join("data/tls");
        let days_left = |file: &str| {
            let certs = read_certs(&tls.join(file)).unwrap();
            let (_, cert) = x509_parser::parse_x509_certificate(&certs[0]).unwrap();
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            assert!(cert.validity().not_before.timestamp() > now - 2 * 3600);
            (cert.validity().not_after.timestamp() - now) / 86_400
        };
        assert!(
            (3640..=3650).contains(&days_left("ca.pem")),
            "{}",
            days_left("ca.pem")
        );
        assert!((396..=397).contains(&days_left("server.pem")));
        // One that runs out within 30 days is made again at the next start.
        let server = std::fs::read(tls.join("server.pem")).unwrap();
        assert!(!expires_soon(&tls.join("server.pem")));
        std::fs::write(tls.join("server.pem"), b"not a certificate").unwrap();
        assert!(expires_soon(&tls.join("server.pem")));
        load_or_create(&settings, &listen).unwrap();
        assert_ne!(std::fs::read(tls.join("server.pem")).unwrap(), server);
        assert!((396..=397).contains(&days_left("server.pem")));
    }

    #[test]
    fn generated_certificates_are_reused_and_keys_private() {
        let dir = tempfile::tempdir().unwrap();
        let settings = TlsSettings::generated_in(dir.path().join("data"));
        let listen = ["127.0.0.1:0".parse().unwrap()];
        let first = load_or_create(&settings, &listen).unwrap();
        let server = std::fs::read(dir.path().join("data/tls/server.pem")).unwrap();
        let again = load_or_create(&settings, &listen).unwrap();
        assert_eq!(first.ca_pin, again.ca_pin);
        assert_eq!(
            server,
            std::fs::read(dir.path().join("data/tls/server.pem")).unwrap()
        );
        for key in ["ca-key.pem", "server-key.pem"] {
            let mode = std::fs::metadata(dir.path().join("data/tls").join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
        // A key others can read (after a careless restore) is made private again.
        let key = dir.path().join("data/tls/server-key.pem");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        load_or_create(&settings, &listen).unwrap();
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // New names: a new server certificate from the same CA.
        let more = TlsSettings {
            extra_sans: vec!["drover.example".into()],
            ..settings
        };
        let third = load_or_create(&more, &listen).unwrap();
        assert_eq!(first.ca_pin, third.ca_pin);
        // What the admin profile picks its address from: the certificate's own names.
        assert_eq!(
            third.server_names,
            ["127.0.0.1", "::1", "drover.example", "localhost"].map(String::from),
            "in the certificate's order"
        );
        assert_ne!(
            server,
            std::fs::read(dir.path().join("data/tls/server.pem")).unwrap()
        );
    }
}
