//! Unpacking a bundle's `.tar.gz` into memory, bounded against hostile input.
//!
//! Nothing is written to disk, so a path cannot escape anywhere; paths are
//! still held to a strict shape, because two spellings of one path (`a//b`,
//! `./a/../b`) would let a bundle show one file to the signature check and
//! another to the loader. OPA's tar reader (`v1/bundle/file.go`) keeps only
//! regular files and silently skips everything else; Palisade refuses links
//! and devices instead of guessing what the author meant.

use super::Limits;
use flate2::read::MultiGzDecoder;
use std::collections::BTreeSet;
use std::io::{self, Read};
use tar::EntryType;

/// One regular file of the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct File {
    /// The path inside the bundle, without a leading `/` (`envoy/authz/policy.rego`).
    pub path: String,
    pub bytes: Vec<u8>,
}

/// Unpacks `compressed` (gzip of a tar), keeping the regular files in
/// archive order.
pub(crate) fn unpack(compressed: &[u8], limits: &Limits) -> Result<Vec<File>, String> {
    if compressed.len() > limits.compressed_bytes {
        return Err(format!(
            "the bundle is {} bytes; the limit is {} bytes compressed",
            compressed.len(),
            limits.compressed_bytes
        ));
    }
    if !compressed.starts_with(&[0x1f, 0x8b]) {
        return Err("the bundle is not gzip-compressed (a bundle is a .tar.gz)".into());
    }
    // Go's gzip reader, which OPA uses, reads concatenated gzip members too.
    let unpacked = Capped {
        inner: MultiGzDecoder::new(compressed),
        left: limits.unpacked_bytes,
        limit: limits.unpacked_bytes,
    };
    let mut archive = tar::Archive::new(unpacked);
    let mut files: Vec<File> = Vec::new();
    let mut seen = BTreeSet::new();
    let entries = archive.entries().map_err(tar_error)?;
    for entry in entries {
        let mut entry = entry.map_err(tar_error)?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        let path = match kind {
            EntryType::Regular => match normalize(&raw)? {
                Some(path) => path,
                None => return Err(format!("`{shown}`: a file needs a name")),
            },
            EntryType::Directory => {
                normalize(&raw)?;
                continue;
            }
            // pax global headers carry metadata only (`git archive` writes one).
            EntryType::XGlobalHeader => continue,
            EntryType::Symlink | EntryType::Link => {
                return Err(format!(
                    "`{shown}`: links are not allowed in a bundle (put the file itself in it)"
                ))
            }
            other => {
                return Err(format!(
                    "`{shown}`: entry type {:?} is not allowed in a bundle (only regular files and directories)",
                    other.as_byte() as char
                ))
            }
        };
        if files.len() >= limits.files {
            return Err(format!(
                "the bundle has more than {} files; that is the limit",
                limits.files
            ));
        }
        let size = entry.size();
        if size > limits.file_bytes {
            return Err(format!(
                "{path}: {size} bytes; the limit is {} bytes per file",
                limits.file_bytes
            ));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size.min(64 * 1024)).unwrap_or(0));
        entry
            .by_ref()
            .take(limits.file_bytes)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{path}: {e}"))?;
        if bytes.len() as u64 != size {
            return Err(format!("{path}: the archive is truncated"));
        }
        if !seen.insert(path.clone()) {
            return Err(format!("{path}: the bundle holds this path twice"));
        }
        files.push(File { path, bytes });
    }
    // A file that is also a directory of another (`a` and `a/b`).
    for file in &files {
        let mut prefix = file.path.as_str();
        while let Some((parent, _)) = prefix.rsplit_once('/') {
            if seen.contains(parent) {
                return Err(format!(
                    "{}: `{parent}` is a file, so it cannot hold other files",
                    file.path
                ));
            }
            prefix = parent;
        }
    }
    // The tar reader stops at the first zero block. Anything but zero
    // padding after it is refused (Go's reader errors on it), and reading to
    // the end checks the gzip CRC.
    let mut rest = archive.into_inner();
    let mut block = [0u8; 8192];
    loop {
        let n = rest.read(&mut block).map_err(tar_error)?;
        if n == 0 {
            break;
        }
        if block.iter().take(n).any(|b| *b != 0) {
            return Err("the bundle has data after the end of its tar archive".into());
        }
    }
    Ok(files)
}

fn tar_error(e: io::Error) -> String {
    format!("the bundle is not a readable .tar.gz: {e}")
}

/// The canonical form of an archive path: OPA's leading `/` (`opa build`
/// writes `/data.json`) and `./` prefixes (`tar -C dir .`) dropped; `None`
/// for the root directory itself. Empty, `.` and `..` segments, backslashes
/// and control characters are refused, so each file has one spelling.
fn normalize(raw: &[u8]) -> Result<Option<String>, String> {
    let text = std::str::from_utf8(raw)
        .map_err(|_| format!("`{}`: a path is not UTF-8", String::from_utf8_lossy(raw)))?;
    let mut path = text.strip_prefix('/').unwrap_or(text);
    while let Some(rest) = path.strip_prefix("./") {
        path = rest;
    }
    let path = path.strip_suffix('/').unwrap_or(path);
    if path.is_empty() || path == "." {
        return Ok(None);
    }
    let bad = |why: &str| Err(format!("`{text}`: {why}"));
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return bad("control characters and backslashes are not allowed in bundle paths");
    }
    for segment in path.split('/') {
        match segment {
            "" => return bad("empty path segment (`//`)"),
            "." | ".." => return bad("`.` and `..` are not allowed in bundle paths"),
            _ => {}
        }
    }
    Ok(Some(path.to_owned()))
}

/// Fails the read, rather than truncating it, once more than `limit` bytes
/// have come out of the decompressor: a gzip bomb stops here.
struct Capped<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // One byte more would be over the limit: probe for it.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::other(format!(
                    "it unpacks to more than {} bytes, the limit",
                    self.limit
                ))),
            };
        }
        let room = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.inner.read(buf.get_mut(..room).unwrap_or_default())?;
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
#[path = "archive_tests.rs"]
mod tests;
