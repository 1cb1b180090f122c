//! The server session driven by hand: every phase, limit and refusal.

use super::*;
use serde_json::json;

fn limits() -> ServerLimits {
    ServerLimits {
        message_timeout: Duration::from_secs(30),
        setup_timeout: Duration::from_secs(10),
        grace: Duration::from_secs(40),
        rcv_timeout: Duration::from_secs(120),
        max_duration: None,
        bitrate_limit: None,
        auth: None,
        tls: false,
    }
}

fn params(extra: Value) -> Value {
    let mut p = json!({"tcp": true, "time": 5, "parallel": 1, "len": 131072});
    if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
        p.extend(extra.clone());
    }
    p
}

/// Every action queued now, as short names.
fn drain(session: &mut ServerSession) -> Vec<String> {
    std::iter::from_fn(|| session.poll_action())
        .map(|a| match a {
            Action::Send(s) => format!("send {s:?}"),
            Action::SendError(code) => format!("error {code}"),
            Action::CreateStreams => "create streams".into(),
            Action::StartTest => "start".into(),
            Action::StopTest => "stop".into(),
            Action::SendResults(_) => "results".into(),
            Action::Finish(End::Done) => "done".into(),
            Action::Finish(End::ClientGone) => "gone".into(),
            Action::Finish(End::Failed(e)) => format!("failed: {e}"),
        })
        .collect()
}

/// A session brought to `phase` by the usual exchange.
fn at(phase: Phase, t0: Instant) -> ServerSession {
    let mut s = ServerSession::new(t0, "client", limits());
    drain(&mut s);
    if phase == Phase::Params {
        return s;
    }
    s.handle_json(t0, Ok(params(json!({}))));
    drain(&mut s);
    if phase == Phase::Streams {
        return s;
    }
    s.handle_streams_ready(t0);
    drain(&mut s);
    if phase == Phase::Running {
        return s;
    }
    s.handle_state(t0, TestState::TestEnd);
    drain(&mut s);
    if phase == Phase::Results {
        return s;
    }
    s.handle_json(t0, Ok(json!({"cpu_util_total": 1.0, "streams": []})));
    drain(&mut s);
    s
}

#[test]
fn a_whole_test_in_order() {
    let t0 = Instant::now();
    let mut s = ServerSession::new(t0, "client", limits());
    assert_eq!(drain(&mut s), ["send ParamExchange"]);
    assert_eq!(
        s.poll_read(),
        Expect::Json {
            max: MAX_PARAMS_LEN
        }
    );
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    s.handle_json(t0, Ok(params(json!({}))));
    assert_eq!(drain(&mut s), ["create streams"]);
    assert_eq!(s.poll_read(), Expect::Nothing);
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    s.handle_streams_ready(t0);
    assert_eq!(
        drain(&mut s),
        ["send TestStart", "send TestRunning", "start"]
    );
    assert_eq!(s.poll_read(), Expect::State);
    s.handle_state(t0, TestState::TestEnd);
    assert_eq!(drain(&mut s), ["stop", "send ExchangeResults"]);
    assert_eq!(
        s.poll_read(),
        Expect::Json {
            max: MAX_RESULTS_LEN
        }
    );
    s.handle_json(t0, Ok(json!({"cpu_util_total": 1.0, "streams": []})));
    assert_eq!(drain(&mut s), ["results", "send DisplayResults"]);
    s.handle_state(t0, TestState::IperfDone);
    assert_eq!(drain(&mut s), ["done"]);
    assert_eq!(s.poll_read(), Expect::Nothing);
}

#[test]
fn every_state_byte_in_every_phase() {
    let t0 = Instant::now();
    for state in TestState::ALL {
        for phase in [
            Phase::Params,
            Phase::Streams,
            Phase::Running,
            Phase::Results,
            Phase::Goodbye,
        ] {
            let mut s = at(phase, t0);
            s.handle_state(t0, state);
            let got = drain(&mut s);
            let want: Vec<String> = match (phase, state) {
                (Phase::Running, TestState::TestEnd) => {
                    vec!["stop".into(), "send ExchangeResults".into()]
                }
                (Phase::Running, TestState::ClientTerminate) => vec!["gone".into()],
                (Phase::Goodbye, _) => vec!["done".into()],
                (_, other) => vec![format!("failed: the client sent an unexpected {other}")],
            };
            assert_eq!(got, want, "{state} in {phase:?}");
        }
    }
}

#[test]
fn bad_parameters_are_refused_with_iperf3s_codes() {
    let t0 = Instant::now();
    let refused = |p: Value, limits: ServerLimits| {
        let mut s = ServerSession::new(t0, "client", limits);
        drain(&mut s);
        s.handle_json(t0, Ok(p));
        drain(&mut s)
    };
    let out = refused(params(json!({"parallel": 500})), limits());
    assert_eq!(out[0], format!("error {}", errors::IENUMSTREAMS));
    assert!(out[1].contains("parallel 500"), "{out:?}");
    let short = ServerLimits {
        max_duration: Some(Duration::from_secs(3)),
        ..limits()
    };
    let out = refused(params(json!({})), short);
    assert_eq!(
        out[0],
        format!("error {}", errors::IEMAXSERVERTESTDURATIONEXCEEDED)
    );
    let slow = ServerLimits {
        bitrate_limit: Some(1_000_000),
        ..limits()
    };
    let out = refused(params(json!({"bandwidth": 600_000, "parallel": 2})), slow);
    assert_eq!(out[0], format!("error {}", errors::IETOTALRATE));
    let mut s = ServerSession::new(t0, "client", limits());
    drain(&mut s);
    s.handle_json(
        t0,
        Err(ProtocolError::JsonLength {
            len: u32::MAX,
            max: MAX_PARAMS_LEN,
        }),
    );
    let out = drain(&mut s);
    assert_eq!(out[0], format!("error {}", errors::IERECVPARAMS));
    assert!(out[1].contains("JSON length 4294967295"), "{out:?}");
}

/// Limits that take alice's credentials (a 10 s clock skew), and her
/// token made at a Unix time.
fn guarded() -> (ServerLimits, impl Fn(i64) -> String) {
    use crate::wire::iperf::auth::{self, Padding};
    let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 1024).expect("a key");
    let users = format!("alice,{}", auth::password_hash("alice", "secret"));
    let verifier = auth::Verifier::new(key.clone(), &users, 10, Padding::Oaep);
    let limits = ServerLimits {
        auth: Some(Arc::new(verifier)),
        ..limits()
    };
    let public = key.to_public_key();
    let token =
        move |ts| auth::token(&public, Padding::Oaep, "alice", "secret", ts).expect("token");
    (limits, token)
}

#[test]
fn credentials_are_checked_at_the_sessions_wall_clock() {
    let (guarded, token) = guarded();
    let t0 = Instant::now();
    let run = |extra: Value, later: u64| {
        let mut s = ServerSession::new(t0, "client", guarded.clone()).with_wall_clock(t0, 1000);
        drain(&mut s);
        s.handle_json(t0 + Duration::from_secs(later), Ok(params(extra)));
        drain(&mut s)
    };
    let out = run(json!({}), 0);
    assert_eq!(out[0], format!("error {}", errors::IEAUTHTEST));
    assert!(out[1].contains("no credentials"), "{out:?}");
    let out = run(json!({"authtoken": token(1000)}), 5);
    assert_eq!(out, ["create streams"], "accepted 5 s later");
    let out = run(json!({"authtoken": token(1000)}), 11);
    assert_eq!(out[0], format!("error {}", errors::IEAUTHTEST));
    assert!(out[1].contains("clock is -11 s off"), "{out:?}");
}

#[test]
fn judged_parameters_start_a_session_that_checks_only_the_credentials() {
    let (guarded, token) = guarded();
    let guarded = ServerLimits {
        max_duration: Some(Duration::from_secs(10)),
        ..guarded
    };
    let t0 = Instant::now();
    // The limits are judged first, credentials or not.
    let long = ServerSession::judge(Ok(params(json!({"time": 60}))), &guarded);
    let Err((code, error)) = long else {
        panic!("a 60 s test judged acceptable")
    };
    assert_eq!(code, Some(errors::IEMAXSERVERTESTDURATIONEXCEEDED));
    assert!(error.to_string().contains("exceeds"), "{error}");
    let bad = ServerSession::judge(Err(ProtocolError::Json("eof".into())), &guarded);
    assert!(matches!(bad, Err((Some(errors::IERECVPARAMS), _))));
    // What was judged is not asked for again; the credentials are checked.
    let start = |extra: Value| {
        let judged = ServerSession::judge(Ok(params(extra)), &guarded).expect("judged");
        let mut s = ServerSession::new(t0, "client", guarded.clone())
            .with_wall_clock(t0, 1000)
            .with_judged(t0, judged);
        drain(&mut s)
    };
    let out = start(json!({}));
    assert_eq!(out[0], format!("error {}", errors::IEAUTHTEST), "{out:?}");
    let out = start(json!({"authtoken": token(1000)}));
    assert_eq!(out, ["create streams"]);
}

#[test]
fn each_phase_times_out_by_injected_time() {
    let t0 = Instant::now();
    let cases = [
        (Phase::Params, 30, "reading the parameters"),
        (Phase::Streams, 10, "waiting for the data streams"),
        (Phase::Running, 45, "waiting for the client to end the test"),
        (Phase::Results, 30, "reading the client's results"),
    ];
    for (phase, secs, what) in cases {
        let mut s = at(phase, t0);
        let due = t0 + Duration::from_secs(secs);
        assert_eq!(s.poll_timeout(), Some(due), "{phase:?}");
        s.handle_timeout(due - Duration::from_millis(1));
        assert!(drain(&mut s).is_empty(), "{phase:?}: not yet");
        s.handle_timeout(due);
        let out = drain(&mut s);
        let last = out.last().cloned().unwrap_or_default();
        assert!(
            last.contains(what) && last.contains("timed out"),
            "{phase:?}: {out:?}"
        );
        if phase == Phase::Running {
            assert_eq!(
                out[0],
                format!("error {}", errors::IESERVERTESTDURATIONEXPIRED)
            );
        }
    }
    let mut s = at(Phase::Goodbye, t0);
    s.handle_timeout(t0 + Duration::from_secs(10));
    assert_eq!(drain(&mut s), ["done"], "a client that never says goodbye");
}

#[test]
fn a_receiving_test_without_data_ends_with_ienomsg() {
    let t0 = Instant::now();
    let mut s = at(Phase::Running, t0);
    let t1 = t0 + Duration::from_secs(2);
    s.handle_progress(t1, 1000);
    assert_eq!(
        s.poll_timeout(),
        Some(t1 + Duration::from_secs(120)).min(Some(t0 + Duration::from_secs(45)))
    );
    let mut long = ServerSession::new(t0, "client", limits());
    drain(&mut long);
    long.handle_json(t0, Ok(params(json!({"time": 0, "num": 1_000_000_000}))));
    long.handle_streams_ready(t0);
    drain(&mut long);
    long.handle_progress(t1, 1000);
    assert_eq!(long.poll_timeout(), Some(t1 + Duration::from_secs(120)));
    long.handle_timeout(t1 + Duration::from_secs(120));
    let out = drain(&mut long);
    assert_eq!(out[0], format!("error {}", errors::IENOMSG));
    assert!(out[1].contains("receiving data"), "{out:?}");
    // A reverse test sends: silence on its side is not a failure.
    let mut reverse = ServerSession::new(t0, "client", limits());
    drain(&mut reverse);
    reverse.handle_json(
        t0,
        Ok(params(json!({"time": 0, "num": 1000, "reverse": true}))),
    );
    reverse.handle_streams_ready(t0);
    drain(&mut reverse);
    assert_eq!(reverse.poll_timeout(), None);
}

#[test]
fn closing_means_gone_during_the_test_and_done_after_it() {
    let t0 = Instant::now();
    for (phase, want) in [
        (
            Phase::Params,
            "failed: the client client closed the control connection",
        ),
        (Phase::Running, "gone"),
        (Phase::Goodbye, "done"),
    ] {
        let mut s = at(phase, t0);
        s.handle_closed();
        assert_eq!(drain(&mut s), [want], "{phase:?}");
    }
}

#[test]
fn tls_is_agreed_only_when_asked_and_the_server_has_a_certificate() {
    let t0 = Instant::now();
    let with_cert = ServerLimits {
        tls: true,
        ..limits()
    };
    for (limits, asked, agreed) in [
        (with_cert.clone(), true, true),
        (with_cert, false, false),
        (limits(), true, false),
    ] {
        let mut s = ServerSession::new(t0, "client", limits);
        drain(&mut s);
        let extra = if asked {
            json!({"sonde_tls": 1})
        } else {
            json!({})
        };
        s.handle_json(t0, Ok(params(extra)));
        let actions = drain(&mut s);
        let told = actions.iter().any(|a| a == "send SondeTls");
        assert_eq!(told, agreed, "{actions:?}");
        assert_eq!(s.params().map(|p| p.tls), Some(agreed));
        assert_eq!(actions.last().map(String::as_str), Some("create streams"));
    }
}
