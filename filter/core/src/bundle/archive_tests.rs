use super::super::testkit::{file, gzip, raw_bundle, tar, Raw};
use super::*;

fn unpack_default(bytes: &[u8]) -> Result<Vec<File>, String> {
    unpack(bytes, &Limits::default())
}

fn paths(files: &[File]) -> Vec<&str> {
    files.iter().map(|f| f.path.as_str()).collect()
}

fn entry<'a>(name: &'a str, kind: u8, link: &'a str) -> Raw<'a> {
    Raw {
        name: name.as_bytes(),
        kind,
        data: b"",
        link: link.as_bytes(),
    }
}

#[test]
fn keeps_regular_files_in_order_and_normalizes_opa_and_tar_prefixes() {
    let bundle = raw_bundle(&[
        entry("./", b'5', ""),
        file("/.manifest", b"{}"),
        entry("envoy/", b'5', ""),
        file("./envoy/policy.rego", b"package envoy"),
        file("data.json", b"{}"),
    ]);
    let files = unpack_default(&bundle).unwrap();
    assert_eq!(
        paths(&files),
        [".manifest", "envoy/policy.rego", "data.json"]
    );
    assert_eq!(files[1].bytes, b"package envoy");
}

#[test]
fn refuses_symlinks_hardlinks_and_devices() {
    for (kind, what) in [
        (b'2', "links"),
        (b'1', "links"),
        (b'3', "entry type"),
        (b'4', "entry type"),
        (b'6', "entry type"),
        (b'7', "entry type"),
    ] {
        let bundle = raw_bundle(&[entry("policy.rego", kind, "/etc/passwd")]);
        let err = unpack_default(&bundle).unwrap_err();
        assert!(
            err.contains("policy.rego") && err.contains(what),
            "{kind}: {err}"
        );
    }
}

#[test]
fn refuses_traversal_and_ambiguous_paths() {
    for name in [
        "../x.rego",
        "a/../../x.rego",
        "a/./x.rego",
        "a//x.rego",
        "//x.rego",
        "a\\..\\x.rego",
        "a/\u{1}x.rego",
    ] {
        let bundle = raw_bundle(&[file(name, b"x")]);
        let err = unpack_default(&bundle).unwrap_err();
        assert!(err.contains(name), "{name}: {err}");
    }
    // A directory entry with `..` is refused too.
    let err = unpack_default(&raw_bundle(&[entry("../", b'5', "")])).unwrap_err();
    assert!(err.contains(".."), "{err}");
}

#[test]
fn refuses_non_utf8_names() {
    let bundle = raw_bundle(&[Raw {
        name: b"a\xff.rego",
        kind: b'0',
        data: b"",
        link: b"",
    }]);
    assert!(unpack_default(&bundle).unwrap_err().contains("UTF-8"));
}

#[test]
fn refuses_duplicate_paths_however_spelled() {
    for (a, b) in [
        ("data.json", "data.json"),
        ("/data.json", "data.json"),
        ("./x/data.json", "/x/data.json"),
    ] {
        let bundle = raw_bundle(&[file(a, b"{}"), file(b, b"{\"evil\": 1}")]);
        let err = unpack_default(&bundle).unwrap_err();
        assert!(err.contains("twice"), "{a} {b}: {err}");
    }
}

#[test]
fn refuses_a_file_that_is_also_a_directory() {
    let bundle = raw_bundle(&[file("a", b"x"), file("a/data.json", b"{}")]);
    assert!(unpack_default(&bundle)
        .unwrap_err()
        .contains("`a` is a file"));
}

#[test]
fn compressed_size_is_capped() {
    let bundle = raw_bundle(&[file("data.json", b"{}")]);
    let limits = Limits {
        compressed_bytes: bundle.len() - 1,
        ..Limits::default()
    };
    assert!(unpack(&bundle, &limits).unwrap_err().contains("compressed"));
    let limits = Limits {
        compressed_bytes: bundle.len(),
        ..Limits::default()
    };
    assert!(unpack(&bundle, &limits).is_ok());
}

#[test]
fn gzip_bombs_stop_at_the_unpacked_cap() {
    // 4 MiB of zeros compresses to a few KiB.
    let zeros = vec![0u8; 4 << 20];
    let bundle = raw_bundle(&[file("data.json", &zeros)]);
    assert!(bundle.len() < 64 * 1024, "{}", bundle.len());
    let limits = Limits {
        unpacked_bytes: 1 << 20,
        ..Limits::default()
    };
    let err = unpack(&bundle, &limits).unwrap_err();
    assert!(err.contains("more than 1048576 bytes"), "{err}");
    // Within the cap, it reads.
    let limits = Limits {
        unpacked_bytes: 8 << 20,
        ..Limits::default()
    };
    assert_eq!(unpack(&bundle, &limits).unwrap()[0].bytes.len(), 4 << 20);
}

#[test]
fn the_file_count_is_capped() {
    let names: Vec<String> = (0..5).map(|i| format!("f{i}.rego")).collect();
    let entries: Vec<Raw<'_>> = names.iter().map(|n| file(n, b"")).collect();
    let bundle = raw_bundle(&entries);
    let limits = Limits {
        files: 4,
        ..Limits::default()
    };
    assert!(unpack(&bundle, &limits)
        .unwrap_err()
        .contains("more than 4 files"));
    let limits = Limits {
        files: 5,
        ..Limits::default()
    };
    assert_eq!(unpack(&bundle, &limits).unwrap().len(), 5);
}

#[test]
fn each_file_is_capped() {
    let bundle = raw_bundle(&[file("small.rego", b"12345"), file("big.json", b"123456")]);
    let limits = Limits {
        file_bytes: 5,
        ..Limits::default()
    };
    let err = unpack(&bundle, &limits).unwrap_err();
    assert!(err.starts_with("big.json: 6 bytes"), "{err}");
}

#[test]
fn refuses_what_is_not_a_tar_gz() {
    assert!(unpack_default(b"plain text").unwrap_err().contains("gzip"));
    assert!(unpack_default(&tar(&[file("a.rego", b"")]))
        .unwrap_err()
        .contains("gzip"));
    assert!(
        unpack_default(&gzip(b"not a tar archive at all, just text"))
            .unwrap_err()
            .contains("not a readable")
    );
    // A tar cut in the middle of a file.
    let whole = tar(&[file("a.rego", &[b'x'; 2000])]);
    let err = unpack_default(&gzip(&whole[..1024])).unwrap_err();
    assert!(err.contains("truncated"), "{err}");
}

#[test]
fn refuses_data_after_the_end_of_the_archive() {
    let mut bytes = tar(&[file("a.rego", b"package a")]);
    bytes.extend_from_slice(b"hidden entry that Go's reader would reject");
    let err = unpack_default(&gzip(&bytes)).unwrap_err();
    assert!(err.contains("after the end"), "{err}");
    // Zero padding is normal.
    let mut bytes = tar(&[file("a.rego", b"package a")]);
    bytes.extend_from_slice(&[0u8; 10240]);
    assert!(unpack_default(&gzip(&bytes)).is_ok());
}

#[test]
fn reads_concatenated_gzip_members_like_go() {
    let whole = tar(&[file("a.rego", b"package a")]);
    let (head, tail) = whole.split_at(512);
    let mut bytes = gzip(head);
    bytes.extend_from_slice(&gzip(tail));
    assert_eq!(paths(&unpack_default(&bytes).unwrap()), ["a.rego"]);
}

#[test]
fn reads_gnu_long_names() {
    let long = format!("{}/policy.rego", "d".repeat(150));
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(9);
    builder
        .append_data(&mut header, &long, &b"package d"[..])
        .unwrap();
    let bytes = gzip(&builder.into_inner().unwrap());
    assert_eq!(paths(&unpack_default(&bytes).unwrap()), [long.as_str()]);
}
