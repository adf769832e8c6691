//! The hash chain over audit records.
//!
//! Each VM writes one chain. Every record carries the chain's id, its
//! sequence number, the previous record's hash and its own hash: SHA-256
//! over the record's [canonical](super::canonical) bytes without `hash`. A
//! chain's first record (`event: "chain_reset"`) names the last known head
//! of the chain it follows, if any, so continuity survives a VM restart.

use super::canonical;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// `prev_hash` of a chain's first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The latest record of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub chain_id: String,
    pub seq: u64,
    pub hash: String,
}

impl Head {
    /// `CHAIN:SEQ:HASH`, as `palisade audit verify --head` takes it.
    pub fn parse(text: &str) -> Option<Head> {
        let (rest, hash) = text.rsplit_once(':')?;
        let (chain_id, seq) = rest.rsplit_once(':')?;
        Some(Head {
            chain_id: chain_id.to_owned(),
            seq: seq.parse().ok()?,
            hash: hash.to_owned(),
        })
    }

    pub fn to_json(&self) -> Value {
        serde_json::json!({"chain_id": self.chain_id, "seq": self.seq, "hash": self.hash})
    }

    pub fn from_json(v: &Value) -> Option<Head> {
        Some(Head {
            chain_id: v.get("chain_id")?.as_str()?.to_owned(),
            seq: v.get("seq")?.as_u64()?,
            hash: v.get("hash")?.as_str()?.to_owned(),
        })
    }
}

/// One VM's chain: the next sequence number and the hash to link to.
#[derive(Debug, Clone)]
pub struct Chain {
    id: String,
    next_seq: u64,
    prev_hash: String,
}

impl Chain {
    /// A new chain; nothing is written until the first [`Chain::seal`].
    pub fn new(id: &str) -> Chain {
        Chain {
            id: id.to_owned(),
            next_seq: 0,
            prev_hash: GENESIS.to_owned(),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// True until the first record is sealed.
    pub fn is_empty(&self) -> bool {
        self.next_seq == 0
    }

    /// The chain's first record: it follows `previous`, the last known head
    /// of the chain this one replaces (if any).
    pub fn reset_record(
        &self,
        previous: Option<&Head>,
        timestamp: &str,
        reason: &str,
    ) -> Map<String, Value> {
        let mut record = Map::new();
        record.insert("event".into(), "chain_reset".into());
        record.insert("timestamp".into(), timestamp.into());
        record.insert("reason".into(), reason.into());
        record.insert(
            "previous".into(),
            previous.map_or(Value::Null, Head::to_json),
        );
        record
    }

    /// Links `record` into the chain: adds `chain_id`, `seq`, `prev_hash`
    /// and `hash`, and moves the head.
    pub fn seal(&mut self, record: Map<String, Value>) -> Value {
        self.seal_line(record).record
    }

    /// As [`Chain::seal`], also giving the record's canonical bytes (the
    /// log line): written once, hashed, and the hash spliced in.
    pub fn seal_line(&mut self, mut record: Map<String, Value>) -> Sealed {
        record.insert("chain_id".into(), self.id.clone().into());
        record.insert("seq".into(), self.next_seq.into());
        record.insert("prev_hash".into(), self.prev_hash.clone().into());
        record.remove("hash");
        let unhashed = canonical::to_vec_marked(&record, "hash");
        let hash = hex(&Sha256::digest(&unhashed.bytes));
        let hash_value = Value::String(hash.clone());
        let line = unhashed.with(&hash_value);
        record.insert("hash".into(), hash_value);
        self.prev_hash = hash;
        self.next_seq += 1;
        Sealed {
            record: Value::Object(record),
            line: String::from_utf8(line).unwrap_or_default(),
        }
    }

    /// The last sealed record's position, if any.
    pub fn head(&self) -> Option<Head> {
        self.next_seq.checked_sub(1).map(|seq| Head {
            chain_id: self.id.clone(),
            seq,
            hash: self.prev_hash.clone(),
        })
    }
}

/// A sealed record, and its canonical bytes as the log line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sealed {
    pub record: Value,
    pub line: String,
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// The hash a record should carry: over its canonical bytes without `hash`.
pub fn hash_of(record: &Value) -> String {
    let digest = match record {
        Value::Object(obj) if obj.contains_key("hash") => {
            let mut without = obj.clone();
            without.remove("hash");
            Sha256::digest(canonical::to_vec(&Value::Object(without)))
        }
        other => Sha256::digest(canonical::to_vec(other)),
    };
    hex(&digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(n: u64) -> Map<String, Value> {
        json!({"decision_id": format!("d{n}"), "decision": "allow"})
            .as_object()
            .cloned()
            .unwrap()
    }

    #[test]
    fn records_link_and_hash_over_everything_but_the_hash() {
        let mut c = Chain::new("c1");
        let a = c.seal(rec(0));
        let b = c.seal(rec(1));
        assert_eq!((a["seq"].as_u64(), b["seq"].as_u64()), (Some(0), Some(1)));
        assert_eq!(a["prev_hash"], GENESIS);
        assert_eq!(b["prev_hash"], a["hash"]);
        assert_eq!(hash_of(&a), a["hash"].as_str().unwrap());
        let line = Chain::new("c2").seal_line(rec(2));
        assert_eq!(
            line.line.as_bytes(),
            canonical::to_vec(&line.record),
            "the line is the record"
        );
        let mut tampered = b.clone();
        tampered["decision"] = "deny".into();
        assert_ne!(hash_of(&tampered), b["hash"].as_str().unwrap());
        assert_eq!(
            c.head(),
            Some(Head {
                chain_id: "c1".into(),
                seq: 1,
                hash: b["hash"].as_str().unwrap().into()
            })
        );
    }

    #[test]
    fn heads_parse_from_the_command_line() {
        let h = Head::parse("18a2f-3:41:abcd").unwrap();
        assert_eq!(
            (h.chain_id.as_str(), h.seq, h.hash.as_str()),
            ("18a2f-3", 41, "abcd")
        );
        assert!(Head::parse("nope").is_none());
        assert!(Head::parse("c:x:abcd").is_none());
    }
}
