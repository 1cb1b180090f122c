//! The -J document built from known inputs.

use super::*;
use crate::perf::measure::StreamEnd;
use crate::perf::stream::TcpState;
use crate::perf::{ConnectedStream, CpuUse};
use crate::wire::iperf::params::Params;
use crate::wire::iperf::results::Results;

fn host() -> Host {
    Host {
        version: "sonde 0.1.0".into(),
        system_info: "Linux box 6.1.0 x86_64".into(),
        timestamp: std::time::Duration::from_millis(1_764_630_000_123),
    }
}

/// A two-second, one-stream TCP upload with fixed figures.
fn report() -> ClientReport {
    let state = TcpState {
        total_retrans: 3,
        snd_cwnd: 65_536,
        rtt: 40,
        rttvar: 5,
        pmtu: 65_535,
        snd_wnd: 200_000,
    };
    let interval = |start: f64, bytes: u64| StreamInterval {
        id: 1,
        socket: 5,
        sender: true,
        start,
        end: start + 1.0,
        bytes,
        tcp: Some((1, state)),
        ..StreamInterval::default()
    };
    ClientReport {
        params: Params {
            time: 2,
            len: 131_072,
            ..Params::default()
        },
        server: "127.0.0.1:5201".parse().expect("literal"),
        local: "127.0.0.1:40000".parse().expect("literal"),
        cookie: "cookie".into(),
        connected: vec![ConnectedStream {
            id: 1,
            socket: 5,
            local: "127.0.0.1:40002".parse().ok(),
            remote: "127.0.0.1:5201".parse().ok(),
            sender: true,
        }],
        intervals: vec![vec![interval(0.0, 1000)], vec![interval(1.0, 3000)]],
        ends: vec![StreamEnd {
            id: 1,
            socket: 5,
            local_sender: true,
            sent: (4000, 2.0),
            received: (4000, 2.0),
            retransmits: Some(3),
            udp: None,
            rtt: Some(SenderTcp {
                max_snd_cwnd: 65_536,
                max_snd_wnd: 100_000,
                min_rtt: 30,
                max_rtt: 50,
                mean_rtt: 40,
            }),
        }],
        local_cpu: CpuUse {
            total: 10.0,
            user: 4.0,
            system: 6.0,
        },
        remote: Some(Results {
            cpu_util_total: 20.0,
            cpu_util_user: 5.0,
            cpu_util_system: 15.0,
            congestion_used: Some("bbr".into()),
            ..Results::default()
        }),
        congestion: Some("cubic".into()),
        mss: Some(1448),
        buffers: Some((16_384, 131_072)),
        interrupted: false,
        diskfile: None,
    }
}

#[test]
fn the_document_is_built_from_its_inputs_alone() {
    let doc = json_report(&report(), "127.0.0.1", &host());
    // SONDE_BLESS=1 rewrites the fixture after a deliberate change.
    if std::env::var_os("SONDE_BLESS").is_some() {
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n";
        std::fs::write(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/src/perf/testdata/json_report_tcp.json"
            ),
            text,
        )
        .expect("writing the fixture");
    }
    let want: Value = serde_json::from_str(include_str!("testdata/json_report_tcp.json"))
        .expect("the fixture is JSON");
    assert_eq!(
        doc,
        want,
        "{}",
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    );
}
