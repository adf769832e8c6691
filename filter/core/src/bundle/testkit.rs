//! Test-only builders: raw tar archives with any names and entry types
//! (hostile bundles), and the test keys.
#![allow(clippy::unwrap_used)]

use super::{Signer, Verifier};
use crate::algorithm::Alg;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::Write;

/// One raw tar entry.
pub(crate) struct Raw<'a> {
    pub name: &'a [u8],
    pub kind: u8,
    pub data: &'a [u8],
    pub link: &'a [u8],
}

pub(crate) fn file<'a>(name: &'a str, data: &'a [u8]) -> Raw<'a> {
    Raw {
        name: name.as_bytes(),
        kind: b'0',
        data,
        link: b"",
    }
}

/// A tar (not gzipped) with exactly these headers: names are written as
/// given, unchecked.
pub(crate) fn tar(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        let name = &mut header.as_old_mut().name;
        name[..entry.name.len()].copy_from_slice(entry.name);
        header.set_size(entry.data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::new(entry.kind));
        if !entry.link.is_empty() {
            header.set_link_name_literal(entry.link).unwrap();
        }
        header.set_cksum();
        builder.append(&header, entry.data).unwrap();
    }
    builder.into_inner().unwrap()
}

pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// A gzipped tar of raw entries.
pub(crate) fn raw_bundle(entries: &[Raw<'_>]) -> Vec<u8> {
    gzip(&tar(entries))
}

pub(crate) const RS256_PUB: &str = include_str!("testdata/rs256.pub.pem");
pub(crate) const ES256_PUB: &str = include_str!("testdata/es256.pub.pem");
pub(crate) const EDDSA_PUB: &str = include_str!("testdata/eddsa.pub.pem");
pub(crate) const ATTACKER_PUB: &str = include_str!("testdata/attacker-rs256.pub.pem");

pub(crate) fn rs256_signer(key_id: Option<&str>, scope: Option<&str>) -> Signer {
    Signer::from_pem(
        Alg::RS256,
        include_bytes!("../../../../envoy/test-keys/rs256.key.pem"),
        key_id,
        scope,
    )
    .unwrap()
}

pub(crate) fn attacker_signer() -> Signer {
    Signer::from_pem(
        Alg::RS256,
        include_bytes!("../../../../envoy/test-keys/attacker-rs256.key.pem"),
        None,
        None,
    )
    .unwrap()
}

pub(crate) fn es256_signer() -> Signer {
    Signer::from_pem(
        Alg::ES256,
        include_bytes!("../../../../envoy/test-keys/es256.key.pem"),
        None,
        None,
    )
    .unwrap()
}

pub(crate) fn eddsa_signer() -> Signer {
    Signer::from_pem(
        Alg::EdDSA,
        include_bytes!("../../../../envoy/test-keys/eddsa.key.pem"),
        None,
        None,
    )
    .unwrap()
}

pub(crate) fn rs256_verifier(key_id: Option<&str>, scope: Option<&str>) -> Verifier {
    Verifier::new(
        "RS256",
        RS256_PUB,
        key_id.map(str::to_owned),
        scope.map(str::to_owned),
    )
    .unwrap()
}
