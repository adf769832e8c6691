use super::*;
use palisade_rls_proto::rate_limit_response::{DescriptorStatus, RateLimit};
use palisade_rls_proto::Duration as PbDuration;

fn service() -> Service {
    Service {
        cluster: "rls".into(),
        domain: "d".into(),
        timeout: Duration::from_millis(20),
    }
}

/// The golden request, written out from the wire format by hand:
/// `RateLimitRequest { domain: "d", descriptors: [requests +1, records +0] }`
/// for rule `b` and pseudonym `p`.
#[test]
fn request_bytes_are_golden() {
    let got = call(
        &service(),
        vec![
            descriptor("b", Kind::Requests, "p", 1),
            descriptor("b", Kind::Records, "p", 0),
        ],
    );
    #[rustfmt::skip]
    let expected: Vec<u8> = [
        &[0x0a, 0x01, b'd'][..],                 // domain = 1: "d"
        &[0x12, 0x31],                           // descriptors = 2, 49 bytes:
        &[0x0a, 0x0a, 0x0a, 0x05], b"limit",     //   entries = 1 (10): key = 1 "limit"
        &[0x12, 0x01, b'b'],                     //                    value = 2 "b"
        &[0x0a, 0x10, 0x0a, 0x04], b"kind",      //   entries (16): key "kind"
        &[0x12, 0x08], b"requests",              //                 value "requests"
        &[0x0a, 0x0d, 0x0a, 0x08], b"identity",  //   entries (13): key "identity"
        &[0x12, 0x01, b'p'],                     //                 value "p"
        &[0x1a, 0x02, 0x08, 0x01],               //   hits_addend = 3: UInt64Value {value = 1: 1}
        &[0x12, 0x2e],                           // descriptors = 2, 46 bytes:
        &[0x0a, 0x0a, 0x0a, 0x05], b"limit",
        &[0x12, 0x01, b'b'],
        &[0x0a, 0x0f, 0x0a, 0x04], b"kind",
        &[0x12, 0x07], b"records",
        &[0x0a, 0x0d, 0x0a, 0x08], b"identity",
        &[0x12, 0x01, b'p'],
        &[0x1a, 0x00],                           //   hits_addend: UInt64Value {} (0, present)
                                                 // hits_addend = 3 (request): 0, left out
    ]
    .concat();
    assert_eq!(got.message.len(), 102);
    assert_eq!(got.message, expected);
    assert_eq!(
        (got.cluster.as_str(), got.service, got.method, got.timeout),
        (
            "rls",
            "envoy.service.ratelimit.v3.RateLimitService",
            "ShouldRateLimit",
            Duration::from_millis(20)
        )
    );
}

#[test]
fn request_round_trips() {
    let d = descriptor("customer-bulk", Kind::Suspension, "0123abcd", 0);
    let got = call(&service(), vec![d.clone()]);
    let back = RateLimitRequest::decode(got.message.as_slice()).unwrap();
    assert_eq!(
        back,
        RateLimitRequest {
            domain: "d".into(),
            descriptors: vec![d],
            hits_addend: 0,
        }
    );
    let entries: Vec<(&str, &str)> = back.descriptors[0]
        .entries
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect();
    assert_eq!(
        entries,
        [
            ("limit", "customer-bulk"),
            ("kind", "suspension"),
            ("identity", "0123abcd")
        ]
    );
    assert_eq!(back.descriptors[0].hits_addend, Some(0));
    assert!(back.descriptors[0].limit.is_none() && !back.descriptors[0].is_negative_hits);
}

fn ok(remaining: u32) -> DescriptorStatus {
    DescriptorStatus {
        code: Code::Ok as i32,
        current_limit: Some(RateLimit {
            name: "x".into(),
            requests_per_unit: 100,
            unit: Unit::Minute as i32,
        }),
        limit_remaining: remaining,
        duration_until_reset: Some(PbDuration {
            seconds: 42,
            nanos: 500_000_000,
        }),
    }
}

fn over() -> DescriptorStatus {
    DescriptorStatus {
        code: Code::OverLimit as i32,
        ..ok(0)
    }
}

fn body(overall: Code, statuses: Vec<DescriptorStatus>) -> Vec<u8> {
    RateLimitResponse {
        overall_code: overall as i32,
        statuses,
    }
    .encode_to_vec()
}

#[test]
fn answers_read_in_order() {
    let answers = read(0, &body(Code::OverLimit, vec![ok(7), over()]), 2).unwrap();
    assert_eq!(
        answers,
        [
            Answer {
                over: false,
                remaining: 7,
                reset: Some(Duration::new(42, 500_000_000)),
                limit: Some((100, Some(Duration::from_secs(60)))),
            },
            Answer {
                over: true,
                remaining: 0,
                reset: Some(Duration::new(42, 500_000_000)),
                limit: Some((100, Some(Duration::from_secs(60)))),
            },
        ]
    );
}

#[test]
fn every_wrong_answer_is_a_failure() {
    let good = body(Code::Ok, vec![ok(1)]);
    assert_eq!(read(14, &good, 1), Err(RlsFailure::Status(14)));
    assert_eq!(read(4, &[], 1), Err(RlsFailure::Status(4)));
    assert_eq!(read(0, b"\xff\xff\xff", 1), Err(RlsFailure::Unparsable));
    assert_eq!(
        read(0, &good[..good.len() - 1], 1),
        Err(RlsFailure::Unparsable)
    );
    // An empty body decodes to an empty response: no statuses.
    assert_eq!(read(0, &[], 1), Err(RlsFailure::Malformed));
    // Not one status per descriptor (Limitador's own server sends none).
    assert_eq!(
        read(0, &body(Code::Ok, vec![]), 1),
        Err(RlsFailure::Malformed)
    );
    assert_eq!(read(0, &good, 2), Err(RlsFailure::Malformed));
    // Codes other than OK and OVER_LIMIT.
    let unknown = DescriptorStatus { code: 0, ..ok(1) };
    assert_eq!(
        read(0, &body(Code::Ok, vec![unknown]), 1),
        Err(RlsFailure::Malformed)
    );
    let seven = DescriptorStatus { code: 7, ..ok(1) };
    assert_eq!(
        read(0, &body(Code::Ok, vec![seven]), 1),
        Err(RlsFailure::Malformed)
    );
    // An overall code that contradicts the statuses, either way.
    assert_eq!(
        read(0, &body(Code::Ok, vec![over()]), 1),
        Err(RlsFailure::Malformed)
    );
    assert_eq!(
        read(0, &body(Code::OverLimit, vec![ok(1)]), 1),
        Err(RlsFailure::Malformed)
    );
    assert_eq!(
        read(0, &body(Code::Unknown, vec![ok(1)]), 1),
        Err(RlsFailure::Malformed)
    );
    // OK from no limit at all: the service counted nothing.
    let unlimited = DescriptorStatus {
        current_limit: None,
        ..ok(0)
    };
    assert_eq!(
        read(0, &body(Code::Ok, vec![unlimited]), 1),
        Err(RlsFailure::NoLimit)
    );
    // OVER_LIMIT without a limit named is still a refusal.
    let bare_over = DescriptorStatus {
        code: Code::OverLimit as i32,
        ..Default::default()
    };
    assert!(read(0, &body(Code::OverLimit, vec![bare_over]), 1).unwrap()[0].over);
}

#[test]
fn odd_durations_and_units_are_ignored_not_trusted() {
    let with = |seconds, nanos, unit: Unit| DescriptorStatus {
        duration_until_reset: Some(PbDuration { seconds, nanos }),
        current_limit: Some(RateLimit {
            name: "x".into(),
            requests_per_unit: 5,
            unit: unit as i32,
        }),
        ..ok(1)
    };
    let one = |s| read(0, &body(Code::Ok, vec![s]), 1).unwrap()[0];
    assert_eq!(one(with(-1, 0, Unit::Second)).reset, None);
    assert_eq!(one(with(1, -1, Unit::Second)).reset, None);
    assert_eq!(one(with(1, 1_000_000_000, Unit::Second)).reset, None);
    assert_eq!(
        one(with(3, 0, Unit::Second)).reset,
        Some(Duration::from_secs(3))
    );
    assert_eq!(
        one(with(3, 0, Unit::Second)).limit,
        Some((5, Some(Duration::from_secs(1))))
    );
    assert_eq!(
        one(with(3, 0, Unit::Week)).limit,
        Some((5, Some(Duration::from_secs(604_800))))
    );
    assert_eq!(one(with(3, 0, Unit::Month)).limit, Some((5, None)));
    assert_eq!(one(with(3, 0, Unit::Unknown)).limit, Some((5, None)));
    let missing = DescriptorStatus {
        duration_until_reset: None,
        ..ok(1)
    };
    assert_eq!(one(missing).reset, None);
}

#[test]
fn the_target_is_a_grpc_service_naming_the_cluster() {
    let service = |cluster: &str| RlsCall {
        cluster: cluster.to_owned(),
        service: palisade_rls_proto::SERVICE_NAME,
        method: palisade_rls_proto::METHOD_NAME,
        message: Vec::new(),
        timeout: Duration::from_millis(20),
    };
    // GrpcService{envoy_grpc: EnvoyGrpc{cluster_name: "rls"}}, as protoc encodes it.
    assert_eq!(service("rls").grpc_service(), b"\x0a\x05\x0a\x03rls");
    // Lengths past 127 take two varint bytes.
    let long = "c".repeat(200);
    let bytes = service(&long).grpc_service();
    assert_eq!(&bytes[..6], b"\x0a\xcb\x01\x0a\xc8\x01");
    assert_eq!(&bytes[6..], long.as_bytes());
}
