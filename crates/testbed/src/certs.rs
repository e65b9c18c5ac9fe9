//! Test certificates generated on the fly with rcgen: CAs, leaves, keys, with chosen dates.

use rcgen::{
    date_time_ymd, BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    IsCa, KeyPair, KeyUsagePurpose,
};

/// A generated certificate with its key, both as PEM.
pub struct TestCert {
    pub cert: Certificate,
    pub key: KeyPair,
}

impl TestCert {
    pub fn pem(&self) -> String {
        self.cert.pem()
    }
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }
    pub fn der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }
}

/// Unix seconds at midnight UTC of a date.
pub fn ymd(year: i32, month: u8, day: u8) -> i64 {
    date_time_ymd(year, month, day).unix_timestamp()
}

fn params(cn: &str, not_after: (i32, u8, u8)) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(not_after.0, not_after.1, not_after.2);
    params
}

/// A self-signed CA valid from 2020-01-01 until `not_after`.
pub fn ca(cn: &str, not_after: (i32, u8, u8)) -> TestCert {
    let mut params = params(cn, not_after);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    TestCert { cert, key }
}

/// A CA with the usual long validity.
pub fn long_ca(cn: &str) -> TestCert {
    ca(cn, (2099, 1, 1))
}

/// A server (leaf) certificate signed by `issuer`.
pub fn leaf(cn: &str, issuer: &TestCert) -> TestCert {
    let mut params = params(cn, (2099, 1, 1));
    params.subject_alt_names = vec![rcgen::SanType::DnsName(cn.try_into().unwrap())];
    params.is_ca = IsCa::ExplicitNoCa;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer.cert, &issuer.key).unwrap();
    TestCert { cert, key }
}

/// A CA certificate whose keyUsage lacks keyCertSign.
pub fn ca_without_cert_sign(cn: &str) -> TestCert {
    let mut params = params(cn, (2099, 1, 1));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    TestCert { cert, key }
}

/// A system bundle made of `certs`, in the style of Debian's (PEM blocks back to back).
pub fn bundle_of(certs: &[&TestCert]) -> String {
    certs.iter().map(|c| c.pem()).collect()
}
