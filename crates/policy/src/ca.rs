//! The combined CA bundle (pure, no I/O): parse PEM, validate the proxy CA, merge it with the system roots.
//!
//! Agents trust one file: the distro's roots followed by the proxy's interception CA. This module
//! turns the bytes of both inputs into that file's text, deterministically (same inputs, same
//! bytes), and holds the pure checks `verify` reuses. Invariants:
//! - only `CERTIFICATE` blocks ever reach the output; a private key is never copied, and a proxy
//!   "CA" file that holds one is refused;
//! - every certificate appears once (compared by DER), the system roots keep their order;
//! - the proxy CA must be a CA (basicConstraints CA:TRUE, keyCertSign if keyUsage is present).

use std::collections::HashSet;
use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Warn when the proxy CA expires within this many days.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

const DAY: i64 = 24 * 60 * 60;

/// The packaged path unit that runs `ca refresh` when a watched file changes.
pub const PATH_UNIT: &str = "pipelock-containment-ca.path";
/// Drop-in that adds the configured paths the packaged path unit does not watch.
pub const PATH_UNIT_DROPIN: &str =
    "/etc/systemd/system/pipelock-containment-ca.path.d/50-pipelock-containment.conf";
/// What the packaged path unit watches (kept equal to its `PathChanged=` lines by a test).
pub const WATCHED_BY_DEFAULT: [&str; 4] = [
    "/etc/pipelock/ca.pem",
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
];

/// The path unit drop-in for configured inputs outside `WATCHED_BY_DEFAULT`, or `None` when the
/// packaged unit already watches them all. `apply` writes it (or removes a stale one).
pub fn path_unit_dropin(proxy_ca: &str, system_bundle: Option<&str>) -> Option<String> {
    let extra: Vec<&str> = [Some(proxy_ca), system_bundle]
        .into_iter()
        .flatten()
        .filter(|path| !WATCHED_BY_DEFAULT.contains(path))
        .collect();
    if extra.is_empty() {
        return None;
    }
    let mut text = String::from(
        "# Written by `pipelock-containment apply` from containment.toml: do not edit.\n\
         # Watch the CA inputs configured there that the packaged unit does not.\n\
         [Path]\n",
    );
    for path in extra {
        text.push_str(&format!("PathChanged={path}\n"));
    }
    Some(text)
}

/// The first line of every combined bundle this helper writes: `remove` deletes only a file that
/// starts with it, so a misconfigured `ca.combined_bundle` never takes a system file with it.
pub const BUNDLE_HEADER: &str = "# Combined CA bundle written by `pipelock-containment ca refresh`";

/// What one certificate is, for reports and warnings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    pub subject: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// SHA-256 of the DER, upper-case hex pairs joined by `:` (as `openssl x509 -fingerprint -sha256`).
    pub sha256: String,
}

/// A certificate taken from a PEM file: its DER and what it says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cert {
    pub der: Vec<u8>,
    pub info: CertInfo,
}

/// Where the proxy CA stands in the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum ProxyCaStatus {
    /// No proxy CA file: the bundle is the system roots only; interception is not trusted yet.
    Missing,
    /// The proxy CA is in the bundle. `already_in_system` counts its certificates that the
    /// system bundle held already (they stay at their place there and are not repeated).
    Trusted {
        certificates: Vec<CertInfo>,
        already_in_system: usize,
    },
}

/// Who owns what, and who must not read the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owners {
    /// Owner of the combined bundle (root:root on a real host).
    pub bundle: (u32, u32),
    /// Owner of the proxy CA key (the proxy user and its primary group).
    pub key: (u32, u32),
    pub agent_uid: u32,
    /// The agent's groups, its primary group included.
    pub agent_groups: Vec<u32>,
}

/// The combined bundle and what went into it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bundle {
    /// The file's exact contents.
    pub text: String,
    /// Distinct certificates taken from the system bundle.
    pub system_certificates: usize,
    /// Certificates left out because an identical one (same DER) came earlier.
    pub duplicates_skipped: usize,
    pub proxy_ca: ProxyCaStatus,
    /// Things the operator should know; none of them stops the bundle from being written.
    pub warnings: Vec<String>,
}

/// Why a bundle cannot be built. `source` is the file name the message shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaError {
    /// The proxy CA file holds a private key.
    PrivateKey { source: String, label: String },
    /// The proxy CA file holds no PEM certificate.
    NoCertificate {
        source: String,
        looks_like_der: bool,
    },
    /// A certificate block of the proxy CA file cannot be decoded or parsed.
    BadCertificate {
        source: String,
        index: usize,
        reason: String,
    },
    /// The proxy CA certificate is not a CA.
    NotCa { source: String, subject: String },
    /// The proxy CA certificate is a CA whose key usage forbids signing certificates.
    NoCertSign { source: String, subject: String },
    /// The system bundle yields no certificate at all (truncated, wrong file).
    EmptySystemBundle { source: String },
}

impl fmt::Display for CaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaError::PrivateKey { source, label } => write!(
                f,
                "{source} looks like a private key (it holds a `{label}` block), not a CA \
                 certificate: refusing it, and no key material is copied into the bundle. \
                 Set ca.proxy_ca to the proxy CA's certificate (the public part), and keep the \
                 key at ca.proxy_ca_key"
            ),
            CaError::NoCertificate {
                source,
                looks_like_der: true,
            } => write!(
                f,
                "{source} holds no PEM certificate; it looks like DER (binary): convert it with \
                 `openssl x509 -inform der -in {source} -out {source}.pem` and point ca.proxy_ca \
                 at the result"
            ),
            CaError::NoCertificate { source, .. } => write!(
                f,
                "{source} holds no certificate (no `-----BEGIN CERTIFICATE-----` block): \
                 ca.proxy_ca must be the proxy CA's certificate in PEM form"
            ),
            CaError::BadCertificate {
                source,
                index,
                reason,
            } => write!(
                f,
                "{source}: certificate block {index} cannot be read ({reason}): replace the file \
                 with the proxy CA's certificate in PEM form"
            ),
            CaError::NotCa { source, subject } => write!(
                f,
                "{source}: the certificate `{subject}` is not a CA (basicConstraints CA:TRUE is \
                 missing), so it cannot sign the proxy's interception certificates: give the \
                 proxy's CA certificate, not a server (leaf) certificate"
            ),
            CaError::NoCertSign { source, subject } => write!(
                f,
                "{source}: the CA certificate `{subject}` has a keyUsage without keyCertSign, so \
                 TLS clients will not accept certificates it signs: regenerate the proxy CA"
            ),
            CaError::EmptySystemBundle { source } => write!(
                f,
                "the system CA bundle {source} holds no certificate: reinstall the distro's \
                 CA package (ca-certificates), or set ca.system_bundle to the right file"
            ),
        }
    }
}

impl std::error::Error for CaError {}

/// One `-----BEGIN X-----` ... `-----END X-----` section of a PEM file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Block<'a> {
    label: String,
    text: &'a [u8],
}

/// Split PEM text into its blocks, by lines, ignoring anything between them (comments, as in
/// Fedora's bundle). An unterminated block at the end is returned too, so it can be reported.
fn blocks(bytes: &[u8]) -> Vec<Block<'_>> {
    let mut out = Vec::new();
    let mut start: Option<(usize, String)> = None;
    let mut offset = 0;
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        let trimmed = trim_ascii(line);
        if let Some(label) = marker(trimmed, b"-----BEGIN ") {
            // A BEGIN inside an open block abandons the open one (it is broken).
            if let Some((begin, label)) = start.take() {
                out.push(Block {
                    label,
                    text: &bytes[begin..offset],
                });
            }
            start = Some((offset, label));
        } else if marker(trimmed, b"-----END ").is_some() {
            if let Some((begin, label)) = start.take() {
                out.push(Block {
                    label,
                    text: &bytes[begin..offset + line.len()],
                });
            }
        }
        offset += line.len();
    }
    if let Some((begin, label)) = start {
        out.push(Block {
            label,
            text: &bytes[begin..],
        });
    }
    out
}

fn trim_ascii(line: &[u8]) -> &[u8] {
    let start = line
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(line.len());
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &line[start..end.max(start)]
}

/// The label of a `-----BEGIN LABEL-----` / `-----END LABEL-----` line.
fn marker(line: &[u8], prefix: &[u8]) -> Option<String> {
    let rest = line.strip_prefix(prefix)?;
    let label = rest.strip_suffix(b"-----")?;
    Some(String::from_utf8_lossy(label).into_owned())
}

fn is_private_key_label(label: &str) -> bool {
    label.contains("PRIVATE KEY")
}

/// Decode one CERTIFICATE block and parse it as X.509.
fn decode_cert(block: &Block<'_>) -> Result<Cert, String> {
    let pem = pem::parse(block.text).map_err(|err| format!("bad PEM: {err}"))?;
    if pem.tag() != "CERTIFICATE" {
        return Err(format!("BEGIN/END labels differ ({:?})", pem.tag()));
    }
    let der = pem.into_contents();
    let info = {
        let (rest, cert) =
            X509Certificate::from_der(&der).map_err(|err| format!("not X.509: {err}"))?;
        if !rest.is_empty() {
            return Err(format!("{} stray bytes after the certificate", rest.len()));
        }
        cert_info(&cert, &der)
    };
    Ok(Cert { der, info })
}

fn cert_info(cert: &X509Certificate<'_>, der: &[u8]) -> CertInfo {
    CertInfo {
        subject: cert.subject().to_string(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        sha256: fingerprint(der),
    }
}

/// SHA-256 of the DER as `AB:CD:...`.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The certificates of the system bundle, in order, with a warning for each block left out.
/// Duplicates are kept here; `build_bundle` drops them.
fn system_certs(bytes: &[u8], source: &str, warnings: &mut Vec<String>) -> Vec<Cert> {
    let mut certs = Vec::new();
    for (index, block) in blocks(bytes).iter().enumerate() {
        let index = index + 1;
        if block.label != "CERTIFICATE" {
            let what = if is_private_key_label(&block.label) {
                " (key material is never copied)"
            } else {
                ""
            };
            warnings.push(format!(
                "{source}: block {index} is a `{}` block, not a certificate: left out{what}",
                sanitize(&block.label)
            ));
            continue;
        }
        match decode_cert(block) {
            Ok(cert) => certs.push(cert),
            Err(reason) => warnings.push(format!(
                "{source}: certificate block {index} cannot be read ({reason}): left out"
            )),
        }
    }
    certs
}

/// Read and validate the proxy CA file: one or more CA certificates, no key, nothing else that
/// matters. Returns the certificates and the warnings (expired, expiring, not yet valid).
pub fn parse_proxy_ca(
    bytes: &[u8],
    source: &str,
    now: i64,
) -> Result<(Vec<Cert>, Vec<String>), CaError> {
    let blocks = blocks(bytes);
    if let Some(key) = blocks.iter().find(|b| is_private_key_label(&b.label)) {
        return Err(CaError::PrivateKey {
            source: source.to_string(),
            label: format!("-----BEGIN {}-----", sanitize(&key.label)),
        });
    }
    let mut certs = Vec::new();
    let mut warnings = Vec::new();
    for (index, block) in blocks.iter().enumerate() {
        if block.label != "CERTIFICATE" {
            warnings.push(format!(
                "{source}: block {} is a `{}` block, not a certificate: ignored",
                index + 1,
                sanitize(&block.label)
            ));
            continue;
        }
        let cert = decode_cert(block).map_err(|reason| CaError::BadCertificate {
            source: source.to_string(),
            index: index + 1,
            reason,
        })?;
        check_is_ca(&cert, source)?;
        warnings.extend(validity_warnings(&cert.info, source, now));
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(CaError::NoCertificate {
            source: source.to_string(),
            // A DER SEQUENCE starts with 0x30.
            looks_like_der: bytes.first() == Some(&0x30),
        });
    }
    Ok((certs, warnings))
}

fn check_is_ca(cert: &Cert, source: &str) -> Result<(), CaError> {
    let (_, parsed) = X509Certificate::from_der(&cert.der).expect("parsed before");
    let not_ca = || CaError::NotCa {
        source: source.to_string(),
        subject: sanitize(&cert.info.subject),
    };
    match parsed.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {}
        _ => return Err(not_ca()),
    }
    match parsed.key_usage() {
        Ok(Some(ku)) if !ku.value.key_cert_sign() => Err(CaError::NoCertSign {
            source: source.to_string(),
            subject: sanitize(&cert.info.subject),
        }),
        Ok(_) => Ok(()),
        Err(_) => Err(not_ca()),
    }
}

/// Warnings about a proxy CA's validity period at `now` (Unix seconds).
pub fn validity_warnings(info: &CertInfo, source: &str, now: i64) -> Vec<String> {
    let subject = sanitize(&info.subject);
    let mut warnings = Vec::new();
    if info.not_after < now {
        warnings.push(format!(
            "the proxy CA `{subject}` ({source}) expired on {}: TLS clients will refuse every \
             connection the proxy intercepts; regenerate the proxy CA",
            format_time(info.not_after)
        ));
    } else if info.not_after - now < EXPIRY_WARNING_DAYS * DAY {
        let days = (info.not_after - now) / DAY;
        warnings.push(format!(
            "the proxy CA `{subject}` ({source}) expires in {days} day{} on {}: regenerate it \
             before then",
            if days == 1 { "" } else { "s" },
            format_time(info.not_after)
        ));
    }
    if info.not_before > now {
        warnings.push(format!(
            "the proxy CA `{subject}` ({source}) is not valid before {}: check the clock, or \
             the CA's dates",
            format_time(info.not_before)
        ));
    }
    warnings
}

/// The combined bundle: every distinct system certificate in order, then the proxy CA's
/// certificates not already there. `proxy_ca` is `(bytes, source)`, or `None` if the file is absent.
pub fn build_bundle(
    system: &[u8],
    system_source: &str,
    proxy_ca: Option<(&[u8], &str)>,
    now: i64,
) -> Result<Bundle, CaError> {
    let mut warnings = Vec::new();
    // Validate the proxy CA first: a refused file stops everything.
    let proxy = match proxy_ca {
        Some((bytes, source)) => {
            let (certs, proxy_warnings) = parse_proxy_ca(bytes, source, now)?;
            Some((certs, source, proxy_warnings))
        }
        None => None,
    };
    let system = system_certs(system, system_source, &mut warnings);
    if system.is_empty() {
        return Err(CaError::EmptySystemBundle {
            source: system_source.to_string(),
        });
    }

    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut duplicates_skipped = 0;
    let mut text = String::new();
    text.push_str(BUNDLE_HEADER);
    text.push_str(
        ": do not edit,\n\
         # it is regenerated whenever the system bundle or the proxy CA changes.\n",
    );
    text.push_str(&format!("# System roots: {}\n", sanitize(system_source)));
    match &proxy {
        Some((_, source, _)) => text.push_str(&format!("# Proxy CA: {}\n", sanitize(source))),
        None => text.push_str("# Proxy CA: none yet (TLS interception is not trusted)\n"),
    }

    let mut system_certificates = 0;
    for cert in &system {
        if seen.insert(cert.der.clone()) {
            system_certificates += 1;
            text.push_str(&encode(&cert.der));
        } else {
            duplicates_skipped += 1;
        }
    }

    let proxy_ca = match proxy {
        None => ProxyCaStatus::Missing,
        Some((certs, _, proxy_warnings)) => {
            warnings.extend(proxy_warnings);
            let mut already_in_system = 0;
            for cert in &certs {
                if seen.insert(cert.der.clone()) {
                    text.push_str(&format!(
                        "# Proxy CA `{}`, SHA-256 {}\n",
                        sanitize(&cert.info.subject),
                        cert.info.sha256
                    ));
                    text.push_str(&encode(&cert.der));
                } else if system.iter().any(|s| s.der == cert.der) {
                    already_in_system += 1;
                } else {
                    duplicates_skipped += 1;
                }
            }
            ProxyCaStatus::Trusted {
                certificates: certs.into_iter().map(|c| c.info).collect(),
                already_in_system,
            }
        }
    };

    Ok(Bundle {
        text,
        system_certificates,
        duplicates_skipped,
        proxy_ca,
        warnings,
    })
}

/// One certificate as normalised PEM: LF line ends, 64-column base64.
fn encode(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// For `verify`: does `bundle` hold every certificate of the proxy CA file? A proxy CA file that
/// fails validation is an error (it says why); a bundle block that cannot be read is ignored.
pub fn bundle_contains_proxy_ca(
    bundle: &[u8],
    proxy_ca: &[u8],
    proxy_source: &str,
) -> Result<bool, CaError> {
    // Validity dates do not matter for membership: use the epoch and drop the warnings.
    let (proxy, _) = parse_proxy_ca(proxy_ca, proxy_source, 0)?;
    let mut ignored = Vec::new();
    let present: HashSet<Vec<u8>> = system_certs(bundle, "bundle", &mut ignored)
        .into_iter()
        .map(|c| c.der)
        .collect();
    Ok(proxy.iter().all(|c| present.contains(&c.der)))
}

/// What a file's inode says about who may read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FileAccess {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits (`st_mode & 0o7777`); JSON shows them in octal, as `"0600"`.
    #[serde(serialize_with = "octal")]
    pub mode: u32,
    /// The file has a POSIX access ACL (then the group bits are the ACL mask).
    pub has_acl: bool,
}

fn octal<S: serde::Serializer>(mode: &u32, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format!("{mode:04o}"))
}

/// Could the user `uid`, member of `groups` (primary group included), read the file?
/// Conservative: the owner counts as a reader whatever the bits say (it can chmod), and with an
/// ACL a readable mask counts, since a named entry may grant the user read access.
pub fn can_read(file: &FileAccess, uid: u32, groups: &[u32]) -> bool {
    if uid == 0 || file.uid == uid {
        return true;
    }
    if file.has_acl && file.mode & 0o040 != 0 {
        return true;
    }
    if groups.contains(&file.gid) {
        return file.mode & 0o040 != 0;
    }
    file.mode & 0o004 != 0
}

/// Text from a certificate or a path made safe for a one-line comment or message: printable
/// ASCII only, and no `--` runs that could look like a PEM marker.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = if c.is_ascii_graphic() || c == ' ' {
            c
        } else {
            '?'
        };
        if c == '-' && out.ends_with('-') {
            continue;
        }
        out.push(c);
    }
    out
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_time(secs: i64) -> String {
    let t = crate::timefmt::utc(secs);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

#[cfg(test)]
mod tests;
