//! The test parameters the client sends after `PARAM_EXCHANGE`.
//!
//! Written so both iperf3 3.12 (flags count as on when merely present) and
//! 3.18+ (typed) read them: flags go out only as `true` or `1`, and only
//! when on. Read leniently: every key is optional, flags are on when
//! present, numbers may come as floats.

use serde_json::{Map, Value, json};

use super::{DEFAULT_TCP_LEN, ProtocolError, UDP_LEN_RANGE, codec::errors};

/// TCP or UDP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// TCP (the default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

/// The parameters of one test, as exchanged.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// Seconds omitted at the start.
    pub omit: u32,
    /// Test length in seconds (0 when `num` or `blockcount` ends it).
    pub time: u32,
    /// Bytes to send, 0 for no limit.
    pub num: u64,
    /// Blocks to send, 0 for no limit.
    pub blockcount: u64,
    /// TCP maximum segment size, 0 for the default.
    pub mss: u32,
    /// TCP_NODELAY on data sockets.
    pub nodelay: bool,
    /// Streams each way.
    pub parallel: u32,
    /// The server sends.
    pub reverse: bool,
    /// Both send.
    pub bidirectional: bool,
    /// Socket buffer size, 0 for the default.
    pub window: u32,
    /// Block (TCP write) or datagram (UDP) size.
    pub len: u32,
    /// Per-stream rate in bit/s, 0 for unlimited.
    pub bandwidth: u64,
    /// Blocks per burst with a rate, 0 for none.
    pub burst: u32,
    /// iperf3's pacing timer (µs), sent for compatibility.
    pub pacing_timer: u32,
    /// IP TOS.
    pub tos: u32,
    /// Output title.
    pub title: Option<String>,
    /// Extra data copied into the output.
    pub extra_data: Option<String>,
    /// TCP congestion control for the server's data sockets.
    pub congestion: Option<String>,
    /// The client wants the server's output in the results.
    pub get_server_output: bool,
    /// 64-bit UDP sequence numbers.
    pub udp_counters_64bit: bool,
    /// Payload "0123456789…" instead of random bytes.
    pub repeating_payload: bool,
    /// The sender uses sendfile.
    pub zerocopy: bool,
    /// The receiver discards with MSG_TRUNC.
    pub skip_rx_copy: bool,
    /// The client's version string.
    pub client_version: Option<String>,
    /// The CPU the server should run the test on (`-A n,m`'s m).
    pub server_affinity: Option<u32>,
    /// Fair-queue pacing rate in bit/s (`--fq-rate`), 0 for none.
    pub fqrate: u64,
    /// IPv6 flow label (`-L`), 0 for none.
    pub flowlabel: u32,
    /// Set DF on IPv4 UDP datagrams (`--dont-fragment`).
    pub dont_fragment: bool,
    /// The client's credentials, encrypted for the server
    /// ([`super::auth::token`]).
    pub authtoken: Option<String>,
    /// sonde's extension (`sonde_tls`): the client asks for TLS data
    /// streams. Sent only when asked, so a stock iperf3 never sees it.
    pub tls: bool,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            protocol: Protocol::Tcp,
            omit: 0,
            time: 10,
            num: 0,
            blockcount: 0,
            mss: 0,
            nodelay: false,
            parallel: 1,
            reverse: false,
            bidirectional: false,
            window: 0,
            len: DEFAULT_TCP_LEN as u32,
            bandwidth: 0,
            burst: 0,
            pacing_timer: 1000,
            tos: 0,
            title: None,
            extra_data: None,
            congestion: None,
            get_server_output: false,
            udp_counters_64bit: false,
            repeating_payload: false,
            zerocopy: false,
            skip_rx_copy: false,
            client_version: None,
            server_affinity: None,
            fqrate: 0,
            flowlabel: 0,
            dont_fragment: false,
            authtoken: None,
            tls: false,
        }
    }
}

fn number(map: &Map<String, Value>, key: &str) -> Option<u64> {
    let value = map.get(key)?;
    value
        .as_u64()
        .or_else(|| value.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

fn small(map: &Map<String, Value>, key: &str, default: u32) -> u32 {
    number(map, key).map_or(default, |n| u32::try_from(n).unwrap_or(u32::MAX))
}

fn text(map: &Map<String, Value>, key: &str) -> Option<String> {
    map.get(key).and_then(Value::as_str).map(str::to_string)
}

impl Params {
    /// Encodes the parameters as iperf3's client does.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        let mut put = |key: &str, value: Value| {
            map.insert(key.to_string(), value);
        };
        match self.protocol {
            Protocol::Tcp => put("tcp", json!(true)),
            Protocol::Udp => put("udp", json!(true)),
        }
        put("omit", json!(self.omit));
        if let Some(core) = self.server_affinity {
            put("server_affinity", json!(core));
        }
        put("time", json!(self.time));
        put("num", json!(self.num));
        put("blockcount", json!(self.blockcount));
        if self.mss > 0 {
            put("MSS", json!(self.mss));
        }
        if self.nodelay {
            put("nodelay", json!(true));
        }
        put("parallel", json!(self.parallel));
        if self.reverse {
            put("reverse", json!(true));
        }
        if self.bidirectional {
            put("bidirectional", json!(true));
        }
        if self.window > 0 {
            put("window", json!(self.window));
        }
        put("len", json!(self.len));
        if self.bandwidth > 0 {
            put("bandwidth", json!(self.bandwidth));
        }
        if self.fqrate > 0 {
            put("fqrate", json!(self.fqrate));
        }
        put("pacing_timer", json!(self.pacing_timer));
        if self.burst > 0 {
            put("burst", json!(self.burst));
        }
        if self.tos > 0 {
            put("TOS", json!(self.tos));
        }
        if self.flowlabel > 0 {
            put("flowlabel", json!(self.flowlabel));
        }
        for (key, value) in [
            ("title", &self.title),
            ("extra_data", &self.extra_data),
            ("congestion", &self.congestion),
        ] {
            if let Some(value) = value {
                put(key, json!(value));
            }
        }
        for (key, on) in [
            ("get_server_output", self.get_server_output),
            ("udp_counters_64bit", self.udp_counters_64bit),
            ("repeating_payload", self.repeating_payload),
            ("zerocopy", self.zerocopy),
            ("skip_rx_copy", self.skip_rx_copy),
            ("dont_fragment", self.dont_fragment),
            ("sonde_tls", self.tls),
        ] {
            if on {
                put(key, json!(1));
            }
        }
        if let Some(token) = &self.authtoken {
            put("authtoken", json!(token));
        }
        put(
            "client_version",
            json!(self.client_version.clone().unwrap_or_else(|| "3.12".into())),
        );
        Value::Object(map)
    }

    /// Decodes parameters leniently (see the module docs).
    ///
    /// # Errors
    /// [`ProtocolError::Json`] when the value is not an object.
    pub fn from_json(value: &Value) -> Result<Self, ProtocolError> {
        let map = value
            .as_object()
            .ok_or_else(|| ProtocolError::Json("parameters are not a JSON object".into()))?;
        let d = Self::default();
        let on = |key: &str| map.contains_key(key);
        let protocol = if on("udp") {
            Protocol::Udp
        } else {
            Protocol::Tcp
        };
        Ok(Self {
            protocol,
            omit: small(map, "omit", d.omit),
            time: small(map, "time", d.time),
            num: number(map, "num").unwrap_or(0),
            blockcount: number(map, "blockcount").unwrap_or(0),
            mss: small(map, "MSS", 0),
            nodelay: on("nodelay"),
            parallel: small(map, "parallel", d.parallel),
            reverse: on("reverse"),
            bidirectional: on("bidirectional"),
            window: small(map, "window", 0),
            len: small(map, "len", d.len),
            bandwidth: number(map, "bandwidth").unwrap_or(0),
            burst: small(map, "burst", 0),
            pacing_timer: small(map, "pacing_timer", d.pacing_timer),
            tos: small(map, "TOS", 0),
            title: text(map, "title"),
            extra_data: text(map, "extra_data"),
            congestion: text(map, "congestion"),
            get_server_output: on("get_server_output"),
            udp_counters_64bit: on("udp_counters_64bit"),
            repeating_payload: on("repeating_payload"),
            zerocopy: on("zerocopy"),
            skip_rx_copy: on("skip_rx_copy"),
            client_version: text(map, "client_version"),
            server_affinity: number(map, "server_affinity").and_then(|c| u32::try_from(c).ok()),
            fqrate: number(map, "fqrate").unwrap_or(0),
            flowlabel: small(map, "flowlabel", 0),
            dont_fragment: on("dont_fragment"),
            authtoken: text(map, "authtoken"),
            tls: on("sonde_tls"),
        })
    }

    /// Checks the ranges iperf3 3.18+ checks; returns the iperf3 error
    /// code to send with the message.
    ///
    /// # Errors
    /// The code and [`ProtocolError::Param`].
    pub fn validate(&self) -> Result<(), (i32, ProtocolError)> {
        let bad = |code, text: String| Err((code, ProtocolError::Param(text)));
        if !(1..=128).contains(&self.parallel) {
            return bad(
                errors::IENUMSTREAMS,
                format!("parallel {} (1 to 128)", self.parallel),
            );
        }
        if self.time > 86_400 {
            return bad(
                errors::IEDURATION,
                format!("time {} s (at most 86400)", self.time),
            );
        }
        if self.omit > 600 {
            return bad(
                errors::IEOMIT,
                format!("omit {} s (at most 600)", self.omit),
            );
        }
        let len = self.len as usize;
        match self.protocol {
            Protocol::Udp if !UDP_LEN_RANGE.contains(&len) => bad(
                errors::IEUDPBLOCKSIZE,
                format!("UDP length {len} (16 to 65507)"),
            ),
            Protocol::Tcp if len == 0 || len > 1 << 20 => bad(
                errors::IEBLOCKSIZE,
                format!("block size {len} (1 to 1048576)"),
            ),
            _ => Ok(()),
        }
    }

    /// Streams the client opens: `parallel`, doubled for bidirectional.
    pub fn total_streams(&self) -> usize {
        let per_way = self.parallel as usize;
        if self.bidirectional {
            2 * per_way
        } else {
            per_way
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_go_out_only_when_on() {
        let text = Params::default().to_json().to_string();
        for key in [
            "reverse",
            "nodelay",
            "bidirectional",
            "zerocopy",
            "udp_counters_64bit",
        ] {
            assert!(!text.contains(key), "{key} in {text}");
        }
        let params = Params {
            reverse: true,
            zerocopy: true,
            ..Params::default()
        };
        let value = params.to_json();
        assert_eq!(value["reverse"], json!(true));
        assert_eq!(value["zerocopy"], json!(1));
    }

    #[test]
    fn decoding_is_lenient_like_iperf3_3_12() {
        let value = json!({"udp": true, "reverse": false, "time": 5.0, "len": 1400, "parallel": 2,
                           "get_server_output": 0, "bandwidth": 1000000});
        let p = Params::from_json(&value).expect("object");
        assert_eq!(p.protocol, Protocol::Udp);
        assert!(p.reverse, "present means on, even as false");
        assert!(p.get_server_output);
        assert_eq!(
            (p.time, p.len, p.parallel, p.bandwidth),
            (5, 1400, 2, 1_000_000)
        );
        assert_eq!(Params::from_json(&json!({})).expect("empty").parallel, 1);
        assert!(Params::from_json(&json!([1])).is_err());
    }

    #[test]
    fn round_trip() {
        let p = Params {
            protocol: Protocol::Udp,
            parallel: 4,
            bidirectional: true,
            len: 1400,
            bandwidth: 5,
            title: Some("t".into()),
            ..Params::default()
        };
        let mut back = Params::from_json(&p.to_json()).expect("round trip");
        back.client_version = None;
        assert_eq!(back, p);
    }

    #[test]
    fn validation_uses_iperf3_codes() {
        let too_many = Params {
            parallel: 129,
            ..Params::default()
        };
        assert_eq!(
            too_many.validate().map_err(|e| e.0),
            Err(errors::IENUMSTREAMS)
        );
        let udp_big = Params {
            protocol: Protocol::Udp,
            len: 70_000,
            ..Params::default()
        };
        assert_eq!(
            udp_big.validate().map_err(|e| e.0),
            Err(errors::IEUDPBLOCKSIZE)
        );
        assert!(Params::default().validate().is_ok());
    }
}
