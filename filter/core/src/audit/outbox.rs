//! Records (JSON texts) waiting to be shipped over HTTP (to the audit collector, or as
//! alerts to a webhook): a bounded queue per VM, one upload in flight at a
//! time, and the health of the endpoint as the last upload left it.
//!
//! The Envoy log holds every record whatever happens here; a record dropped
//! from a full outbox is counted, never silently lost.

use flate2::write::GzEncoder;
use flate2::Compression;
use std::collections::VecDeque;
use std::io::Write;

/// Where an outbox sends, compiled from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub cluster: String,
    pub path: String,
    pub authority: String,
    pub timeout_ms: u64,
    /// Records per upload.
    pub batch_max: usize,
    /// Personal-data routes fail closed while this endpoint is unreachable.
    pub required: bool,
}

/// Records waiting for an endpoint.
#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<String>,
    cap: usize,
    dropped: u64,
    in_flight: Option<(u32, Vec<String>)>,
    /// Uploads failed in a row (0: the last one succeeded, or none yet).
    failures: u32,
    last_error: Option<String>,
}

impl Outbox {
    /// An outbox holding at most `cap` records.
    pub fn new(cap: usize) -> Outbox {
        Outbox {
            queue: VecDeque::new(),
            cap,
            dropped: 0,
            in_flight: None,
            failures: 0,
            last_error: None,
        }
    }

    /// Queues a record; false if the outbox was full and it was dropped.
    pub fn push(&mut self, record: String) -> bool {
        if self.queue.len() >= self.cap {
            self.dropped += 1;
            return false;
        }
        self.queue.push_back(record);
        true
    }

    /// Records dropped because the outbox was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Records waiting (the one upload in flight included).
    pub fn len(&self) -> usize {
        self.queue.len() + self.in_flight.as_ref().map_or(0, |(_, b)| b.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next batch to send, unless one is in flight or nothing waits.
    pub fn next_batch(&mut self, max: usize) -> Option<Vec<String>> {
        if self.in_flight.is_some() || self.queue.is_empty() {
            return None;
        }
        let n = max.max(1).min(self.queue.len());
        Some(self.queue.drain(..n).collect())
    }

    /// `batch` went out as call `token`.
    pub fn sent(&mut self, token: u32, batch: Vec<String>) {
        self.in_flight = Some((token, batch));
    }

    /// `batch` could not even be dispatched: it goes back to the front.
    pub fn not_sent(&mut self, batch: Vec<String>, why: &str) {
        self.requeue(batch);
        self.failed(why);
    }

    /// The answer to call `token` (`status` None: no answer, e.g. a
    /// timeout or a refused connection). True if the token was ours.
    pub fn answered(&mut self, token: u32, status: Option<u16>) -> bool {
        let Some((t, batch)) = self.in_flight.take() else {
            return false;
        };
        if t != token {
            self.in_flight = Some((t, batch));
            return false;
        }
        match status {
            Some(s) if (200..300).contains(&s) => {
                self.failures = 0;
                self.last_error = None;
            }
            other => {
                self.requeue(batch);
                self.failed(&other.map_or("no answer".to_owned(), |s| format!("status {s}")));
            }
        }
        true
    }

    /// True unless the last upload failed.
    pub fn healthy(&self) -> bool {
        self.failures == 0
    }

    /// Why the last upload failed.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    fn requeue(&mut self, batch: Vec<String>) {
        for record in batch.into_iter().rev() {
            self.queue.push_front(record);
        }
        // Over the cap now: the newest records go, counted.
        while self.queue.len() > self.cap {
            self.queue.pop_back();
            self.dropped += 1;
        }
    }

    fn failed(&mut self, why: &str) {
        self.failures = self.failures.saturating_add(1);
        self.last_error = Some(why.to_owned());
    }
}

/// A batch of records (each a JSON text) as OPA's decision-log upload API
/// carries it: a JSON array, gzip-compressed (`content-encoding: gzip`).
pub fn gzip_json(batch: &[String]) -> Vec<u8> {
    let json = format!("[{}]", batch.join(","));
    let mut gz = GzEncoder::new(Vec::with_capacity(json.len() / 4 + 64), Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = gz.write_all(json.as_bytes());
    gz.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use serde_json::json;
    use std::io::Read;

    #[test]
    fn batches_go_one_at_a_time_and_come_back_on_failure() {
        let mut o = Outbox::new(10);
        for i in 0..5 {
            assert!(o.push(json!({"seq": i}).to_string()));
        }
        let batch = o.next_batch(3).unwrap();
        assert_eq!(batch.len(), 3);
        o.sent(7, batch);
        assert!(o.next_batch(3).is_none(), "one in flight");
        assert!(!o.answered(8, Some(200)), "not our call");
        assert!(o.answered(7, Some(503)));
        assert!(!o.healthy());
        assert_eq!(o.last_error(), Some("status 503"));
        let again = o.next_batch(10).unwrap();
        assert_eq!(again[0], r#"{"seq":0}"#, "the failed batch first, in order");
        assert_eq!(again.len(), 5);
        o.sent(9, again);
        assert!(o.answered(9, Some(204)));
        assert!(o.healthy() && o.is_empty());
    }

    #[test]
    fn a_full_outbox_counts_what_it_drops() {
        let mut o = Outbox::new(2);
        assert!(o.push("1".into()) && o.push("2".into()));
        assert!(!o.push("3".into()));
        assert_eq!(o.dropped(), 1);
        let b = o.next_batch(2).unwrap();
        o.push("4".into());
        o.not_sent(b, "dispatch refused");
        assert_eq!(o.len(), 2);
        assert_eq!(o.dropped(), 2, "the newest went when the batch came back");
    }

    #[test]
    fn uploads_are_gzipped_json_arrays() {
        let body = gzip_json(&[
            json!({"decision_id": "a"}).to_string(),
            json!({"decision_id": "b"}).to_string(),
        ]);
        let mut text = String::new();
        GzDecoder::new(&body[..]).read_to_string(&mut text).unwrap();
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back[1]["decision_id"], "b");
    }
}
