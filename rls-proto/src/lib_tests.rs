//! Wire bytes written by hand from the `.proto` field numbers: tag byte =
//! (field number << 3) | wire type, wire type 0 for varints and 2 for
//! length-delimited strings and messages.

use super::rate_limit_descriptor::Entry;
use super::rate_limit_response::rate_limit::Unit;
use super::rate_limit_response::{Code, DescriptorStatus, RateLimit};
use super::*;
use alloc::vec;
use prost::Message;

#[test]
fn request_wire_format() {
    let req = RateLimitRequest {
        domain: "d".into(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![Entry {
                key: "k".into(),
                value: "v".into(),
            }],
            hits_addend: Some(5),
            ..Default::default()
        }],
        hits_addend: 7,
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 0x01, b'd', // domain = 1, 1 byte
        0x12, 0x0c, // descriptors = 2, 12 bytes:
        0x0a, 0x06, // entries = 1, 6 bytes:
        0x0a, 0x01, b'k', // key = 1
        0x12, 0x01, b'v', // value = 2
        0x1a, 0x02, 0x08, 0x05, // hits_addend = 3: UInt64Value {value = 1: 5}
        0x18, 0x07, // hits_addend = 3 (uint32): 7
    ];
    assert_eq!(req.encode_to_vec(), expected);
    assert_eq!(RateLimitRequest::decode(&expected[..]).ok(), Some(req));
}

/// `Some(0)` is an empty wrapper on the wire (present, value 0): a check
/// that charges nothing. `None` leaves the field out: the request's hits.
#[test]
fn descriptor_hits_zero_is_present_and_none_is_absent() {
    let zero = RateLimitDescriptor {
        hits_addend: Some(0),
        ..Default::default()
    };
    assert_eq!(zero.encode_to_vec(), [0x1a, 0x00]);
    assert_eq!(
        RateLimitDescriptor::decode(&[0x1a, 0x00][..]).ok(),
        Some(zero)
    );
    let unset = RateLimitDescriptor::default();
    assert!(unset.encode_to_vec().is_empty());
    assert_eq!(
        RateLimitDescriptor::decode(&[][..])
            .ok()
            .map(|d| d.hits_addend),
        Some(None)
    );
    let refund = RateLimitDescriptor {
        is_negative_hits: true,
        ..Default::default()
    };
    assert_eq!(refund.encode_to_vec(), [0x20, 0x01]);
}

#[test]
fn response_wire_format() {
    let resp = RateLimitResponse {
        overall_code: Code::OverLimit as i32,
        statuses: vec![DescriptorStatus {
            code: Code::OverLimit as i32,
            current_limit: Some(RateLimit {
                name: "n".into(),
                requests_per_unit: 3,
                unit: Unit::Minute as i32,
            }),
            limit_remaining: 1,
            duration_until_reset: Some(Duration {
                seconds: 9,
                nanos: 0,
            }),
        }],
    };
    #[rustfmt::skip]
    let expected = [
        0x08, 0x02, // overall_code = 1: OVER_LIMIT
        0x12, 0x11, // statuses = 2, 17 bytes:
        0x08, 0x02, // code = 1: OVER_LIMIT
        0x12, 0x07, // current_limit = 2, 7 bytes:
        0x08, 0x03, // requests_per_unit = 1
        0x10, 0x02, // unit = 2: MINUTE
        0x1a, 0x01, b'n', // name = 3
        0x18, 0x01, // limit_remaining = 3
        0x22, 0x02, 0x08, 0x09, // duration_until_reset = 4: {seconds = 1: 9}
    ];
    assert_eq!(resp.encode_to_vec(), expected);
    assert_eq!(RateLimitResponse::decode(&expected[..]).ok(), Some(resp));
}

/// Fields left out of these structs (here `raw_body` = 5 and `quota` = 7)
/// are skipped, not errors.
#[test]
fn unknown_fields_are_skipped() {
    #[rustfmt::skip]
    let bytes = [
        0x08, 0x01, // overall_code: OK
        0x2a, 0x03, b'a', b'b', b'c', // raw_body = 5
        0x12, 0x02, 0x08, 0x01, // statuses: [{code: OK}]
        0x3a, 0x02, 0x08, 0x01, // quota = 7 {requests = 1}
    ];
    let resp = RateLimitResponse::decode(&bytes[..]).ok();
    assert_eq!(
        resp,
        Some(RateLimitResponse {
            overall_code: Code::Ok as i32,
            statuses: vec![DescriptorStatus {
                code: Code::Ok as i32,
                ..Default::default()
            }],
        })
    );
}

#[test]
fn truncated_bytes_do_not_decode() {
    // statuses announces 17 bytes, 2 follow.
    assert!(RateLimitResponse::decode(&[0x08, 0x02, 0x12, 0x11, 0x08, 0x02][..]).is_err());
    // A tag with wire type 7 does not exist.
    assert!(RateLimitResponse::decode(&[0x0f][..]).is_err());
}

#[test]
fn names() {
    assert_eq!(
        SHOULD_RATE_LIMIT_PATH,
        alloc::format!("/{SERVICE_NAME}/{METHOD_NAME}")
    );
}
