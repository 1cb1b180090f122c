//! The results JSON each side sends after `EXCHANGE_RESULTS`.
//!
//! iperf3 3.12 prints −1 as 18446744073709551615 (its cJSON prints integers
//! unsigned), so any integer above `i64::MAX` reads as −1.

use serde_json::{Map, Value, json};

use super::ProtocolError;

/// One stream's totals.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamResult {
    /// The stream id (1, 3, 4, …).
    pub id: u32,
    /// Bytes sent (sender) or received (receiver) after the omit period.
    pub bytes: u64,
    /// TCP retransmits of a sending stream, −1 when unknown.
    pub retransmits: i64,
    /// UDP jitter in seconds.
    pub jitter: f64,
    /// UDP packets lost.
    pub errors: i64,
    /// `errors` when the omit period ended.
    pub omitted_errors: i64,
    /// UDP packets sent, or the highest sequence number received.
    pub packets: i64,
    /// `packets` when the omit period ended.
    pub omitted_packets: i64,
    /// Always 0.
    pub start_time: f64,
    /// Seconds this side measured.
    pub end_time: f64,
}

/// One side's results.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Results {
    /// CPU use in % of one core over the test.
    pub cpu_util_total: f64,
    /// User part of it.
    pub cpu_util_user: f64,
    /// System part of it.
    pub cpu_util_system: f64,
    /// −1 for a pure receiver, 1 for a TCP sender with retransmit counts.
    pub sender_has_retransmits: i64,
    /// Congestion control used on this side.
    pub congestion_used: Option<String>,
    /// Per-stream totals.
    pub streams: Vec<StreamResult>,
    /// The server's text output, when asked for.
    pub server_output_text: Option<String>,
    /// The server's JSON output, when asked for.
    pub server_output_json: Option<Value>,
    /// sonde's own additions (a key iperf3 ignores): tests that ran at
    /// once, and a sending server's TCP state per interval.
    pub sonde: Option<Value>,
}

/// Reads a signed integer, treating 3.12's unsigned −1 as −1.
fn signed(value: Option<&Value>) -> i64 {
    match value {
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_u64().map(|_| -1))
            .or_else(|| v.as_f64().map(|f| f as i64))
            .unwrap_or(0),
        None => 0,
    }
}

fn float(value: Option<&Value>) -> f64 {
    value.and_then(Value::as_f64).unwrap_or(0.0)
}

impl StreamResult {
    fn to_json(&self) -> Value {
        json!({
            "id": self.id, "bytes": self.bytes, "retransmits": self.retransmits,
            "jitter": self.jitter, "errors": self.errors, "omitted_errors": self.omitted_errors,
            "packets": self.packets, "omitted_packets": self.omitted_packets,
            "start_time": self.start_time, "end_time": self.end_time,
        })
    }

    fn from_json(map: &Map<String, Value>) -> Result<Self, ProtocolError> {
        let id = map
            .get("id")
            .and_then(Value::as_u64)
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| ProtocolError::Json("a stream without an id".into()))?;
        let bytes = map.get("bytes").and_then(Value::as_u64).unwrap_or(0);
        Ok(Self {
            id,
            bytes,
            retransmits: signed(map.get("retransmits")),
            jitter: float(map.get("jitter")),
            errors: signed(map.get("errors")),
            omitted_errors: signed(map.get("omitted_errors")),
            packets: signed(map.get("packets")),
            omitted_packets: signed(map.get("omitted_packets")),
            start_time: float(map.get("start_time")),
            end_time: float(map.get("end_time")),
        })
    }
}

impl Results {
    /// Encodes as iperf3 does.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("cpu_util_total".into(), json!(self.cpu_util_total));
        map.insert("cpu_util_user".into(), json!(self.cpu_util_user));
        map.insert("cpu_util_system".into(), json!(self.cpu_util_system));
        map.insert(
            "sender_has_retransmits".into(),
            json!(self.sender_has_retransmits),
        );
        if let Some(cc) = &self.congestion_used {
            map.insert("congestion_used".into(), json!(cc));
        }
        if let Some(text) = &self.server_output_text {
            map.insert("server_output_text".into(), json!(text));
        }
        if let Some(value) = &self.server_output_json {
            map.insert("server_output_json".into(), value.clone());
        }
        if let Some(value) = &self.sonde {
            map.insert("sonde".into(), value.clone());
        }
        let streams = self.streams.iter().map(StreamResult::to_json).collect();
        map.insert("streams".into(), Value::Array(streams));
        Value::Object(map)
    }

    /// Decodes leniently; `streams` is required.
    ///
    /// # Errors
    /// [`ProtocolError::Json`] when it is not an object or a stream lacks an id.
    pub fn from_json(value: &Value) -> Result<Self, ProtocolError> {
        let map = value
            .as_object()
            .ok_or_else(|| ProtocolError::Json("results are not a JSON object".into()))?;
        let streams = map
            .get("streams")
            .and_then(Value::as_array)
            .ok_or_else(|| ProtocolError::Json("results without streams".into()))?
            .iter()
            .map(|s| {
                s.as_object()
                    .ok_or_else(|| ProtocolError::Json("a stream is not an object".into()))
                    .and_then(StreamResult::from_json)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            cpu_util_total: float(map.get("cpu_util_total")),
            cpu_util_user: float(map.get("cpu_util_user")),
            cpu_util_system: float(map.get("cpu_util_system")),
            sender_has_retransmits: signed(map.get("sender_has_retransmits")),
            congestion_used: map
                .get("congestion_used")
                .and_then(Value::as_str)
                .map(String::from),
            streams,
            server_output_text: map
                .get("server_output_text")
                .and_then(Value::as_str)
                .map(String::from),
            server_output_json: map.get("server_output_json").cloned(),
            sonde: map.get("sonde").cloned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_iperf3_3_12_unsigned_minus_one() {
        let text = r#"{"cpu_util_total":1.5,"cpu_util_user":0.5,"cpu_util_system":1,
            "sender_has_retransmits":18446744073709551615,"streams":[{"id":1,"bytes":1000,
            "retransmits":18446744073709551615,"jitter":0,"errors":0,"packets":0,
            "start_time":0,"end_time":10.0001}]}"#;
        let value: Value = serde_json::from_str(text).expect("json");
        let r = Results::from_json(&value).expect("results");
        assert_eq!(r.sender_has_retransmits, -1);
        assert_eq!(r.streams[0].retransmits, -1);
        assert_eq!(r.streams[0].bytes, 1000);
        assert!((r.streams[0].end_time - 10.0001).abs() < 1e-9);
    }

    #[test]
    fn round_trip_and_required_streams() {
        let r = Results {
            cpu_util_total: 3.0,
            sender_has_retransmits: 1,
            congestion_used: Some("bbr".into()),
            streams: vec![StreamResult {
                id: 3,
                bytes: 7,
                retransmits: 2,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(Results::from_json(&r.to_json()).expect("round trip"), r);
        assert!(Results::from_json(&json!({"cpu_util_total": 1})).is_err());
        assert!(Results::from_json(&json!({"streams": [{"bytes": 1}]})).is_err());
    }
}
