//! The server's side of an iperf3 control session, as a state machine:
//! parameters, then the data streams, the test, the results and the
//! client's goodbye; the server's own limits (test length, total rate)
//! checked on the way, and a deadline for every phase.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Expect, with_deadline};
use crate::error::Error;
use crate::wire::iperf::codec::errors;
use crate::wire::iperf::params::{Params, Protocol};
use crate::wire::iperf::results::Results;
use crate::wire::iperf::state::TestState;
use crate::wire::iperf::{MAX_PARAMS_LEN, MAX_RESULTS_LEN, ProtocolError};

/// The server's limits and how long each phase may take.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// A message (parameters, results) once expected.
    pub message_timeout: Duration,
    /// The data streams to connect; the client's goodbye.
    pub setup_timeout: Duration,
    /// Past time + omit, before a test the client never ends is dropped.
    pub grace: Duration,
    /// A receiving test with no data for this long is dropped.
    pub rcv_timeout: Duration,
    /// Tests longer than this (time + omit) are refused.
    pub max_duration: Option<Duration>,
    /// Tests faster in total than this (bit/s) are refused.
    pub bitrate_limit: Option<u64>,
}

/// What the driver does next.
#[derive(Debug)]
pub enum Action {
    /// Write a state byte.
    Send(TestState),
    /// Write `SERVER_ERROR` with this iperf3 error code (errno 0).
    SendError(i32),
    /// Set up the data streams of [`ServerSession::params`] (writing
    /// `CREATE_STREAMS` when ready to take them), then call
    /// [`ServerSession::handle_streams_ready`].
    CreateStreams,
    /// Start measuring: the streams begin to move data.
    StartTest,
    /// Stop the senders and take the final figures.
    StopTest,
    /// Write this server's results; the client's are given.
    SendResults(Box<Results>),
    /// The session is over.
    Finish(End),
}

/// How a server session ended.
#[derive(Debug)]
pub enum End {
    /// The test ran and the results were exchanged.
    Done,
    /// The client went (terminated, or closed) during the test.
    ClientGone,
    /// It failed; the client was told when there was an iperf3 code for it.
    Failed(Error),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Params,
    Streams,
    Running,
    Results,
    Goodbye,
    Over,
}

/// One client's control session, seen from the server. No sockets and no
/// clock: the driver passes what arrived and the time, and carries out
/// [`Self::poll_action`]'s actions.
#[derive(Debug)]
pub struct ServerSession {
    limits: ServerLimits,
    peer: String,
    phase: Phase,
    deadline: Option<Instant>,
    params: Option<Params>,
    /// When the test started (its length is counted from here).
    started: Option<Instant>,
    /// When data last arrived, while this side receives.
    last_data: Option<Instant>,
    received: u64,
    actions: VecDeque<Action>,
}

impl ServerSession {
    /// A session with the client at `peer` that just sent its cookie.
    pub fn new(now: Instant, peer: impl Into<String>, limits: ServerLimits) -> Self {
        let deadline = Some(now + limits.message_timeout);
        Self {
            limits,
            peer: peer.into(),
            phase: Phase::Params,
            deadline,
            params: None,
            started: None,
            last_data: None,
            received: 0,
            actions: VecDeque::from([Action::Send(TestState::ParamExchange)]),
        }
    }

    /// The test's parameters, once accepted.
    pub fn params(&self) -> Option<&Params> {
        self.params.as_ref()
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// What to read from the client now.
    pub fn poll_read(&self) -> Expect {
        match self.phase {
            Phase::Params => Expect::Json {
                max: MAX_PARAMS_LEN,
            },
            Phase::Results => Expect::Json {
                max: MAX_RESULTS_LEN,
            },
            Phase::Running | Phase::Goodbye => Expect::State,
            Phase::Streams | Phase::Over => Expect::Nothing,
        }
    }

    /// When [`Self::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase != Phase::Running {
            return self.deadline;
        }
        let silent = self.last_data.map(|at| at + self.limits.rcv_timeout);
        match (self.deadline, silent) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A JSON message from the client (the parameters, then its
    /// results), or why it could not be read.
    pub fn handle_json(&mut self, now: Instant, json: Result<Value, ProtocolError>) {
        match self.phase {
            Phase::Params => self.handle_params(now, json),
            Phase::Results => self.handle_results(now, json),
            _ => self.fail(Error::Ended("a message out of turn".into())),
        }
    }

    fn handle_params(&mut self, now: Instant, json: Result<Value, ProtocolError>) {
        let what = "reading the parameters";
        let params = match json {
            Ok(json) => Params::from_json(&json),
            Err(source) => {
                self.actions
                    .push_back(Action::SendError(errors::IERECVPARAMS));
                return self.fail(protocol(what, source));
            }
        };
        let params = match params.map_err(|source| protocol(what, source)) {
            Ok(params) => params,
            Err(error) => return self.fail(error),
        };
        if let Err((code, error)) = self.check(&params) {
            self.actions.push_back(Action::SendError(code));
            return self.fail(error);
        }
        self.params = Some(params);
        self.phase = Phase::Streams;
        self.deadline = Some(now + self.limits.setup_timeout);
        self.actions.push_back(Action::CreateStreams);
    }

    /// Checks the parameters and the server's own limits.
    fn check(&self, params: &Params) -> Result<(), (i32, Error)> {
        params
            .validate()
            .map_err(|(code, source)| (code, protocol("checking the parameters", source)))?;
        let total = u64::from(params.time) + u64::from(params.omit);
        if let Some(max) = self.limits.max_duration
            && (params.time == 0 || total > max.as_secs())
        {
            let e = Error::Invalid(format!(
                "test of {total} s exceeds the server's maximum of {} s",
                max.as_secs()
            ));
            return Err((errors::IEMAXSERVERTESTDURATIONEXCEEDED, e));
        }
        if let Some(limit) = self.limits.bitrate_limit {
            let ways = if params.bidirectional { 2 } else { 1 };
            let rate = params
                .bandwidth
                .saturating_mul(u64::from(params.parallel))
                .saturating_mul(ways);
            if params.bandwidth == 0 || rate > limit {
                let e = Error::Invalid(format!(
                    "total rate {rate} bit/s exceeds the server's limit of {limit}"
                ));
                return Err((errors::IETOTALRATE, e));
            }
        }
        Ok(())
    }

    /// Every data stream is connected: the test starts.
    pub fn handle_streams_ready(&mut self, now: Instant) {
        let Some(params) = self
            .params
            .as_ref()
            .filter(|_| self.phase == Phase::Streams)
        else {
            return self.fail(Error::Ended("data streams out of turn".into()));
        };
        let receives = params.bidirectional || !params.reverse;
        self.deadline = (params.time > 0).then(|| {
            now + Duration::from_secs(u64::from(params.time) + u64::from(params.omit))
                + self.limits.grace
        });
        self.last_data = receives.then_some(now);
        self.started = Some(now);
        self.phase = Phase::Running;
        self.actions.extend([
            Action::Send(TestState::TestStart),
            Action::Send(TestState::TestRunning),
            Action::StartTest,
        ]);
    }

    /// The bytes received so far, while the test runs.
    pub fn handle_progress(&mut self, now: Instant, received: u64) {
        if received != self.received {
            self.received = received;
            if self.last_data.is_some() {
                self.last_data = Some(now);
            }
        }
    }

    /// A state byte from the client.
    pub fn handle_state(&mut self, now: Instant, state: TestState) {
        match (self.phase, state) {
            (Phase::Running, TestState::TestEnd) => {
                self.phase = Phase::Results;
                self.deadline = Some(now + self.limits.message_timeout);
                self.actions
                    .extend([Action::StopTest, Action::Send(TestState::ExchangeResults)]);
            }
            (Phase::Running, TestState::ClientTerminate) => self.finish(End::ClientGone),
            // IPERF_DONE, or whatever a client says last.
            (Phase::Goodbye, _) => self.finish(End::Done),
            (_, other) => self.fail(Error::Ended(format!(
                "the client sent an unexpected {other}"
            ))),
        }
    }

    fn handle_results(&mut self, now: Instant, json: Result<Value, ProtocolError>) {
        let what = "reading the client's results";
        match json.and_then(|json| Results::from_json(&json)) {
            Ok(theirs) => {
                self.phase = Phase::Goodbye;
                self.deadline = Some(now + self.limits.setup_timeout);
                self.actions.extend([
                    Action::SendResults(Box::new(theirs)),
                    Action::Send(TestState::DisplayResults),
                ]);
            }
            Err(source) => self.fail(protocol(what, source)),
        }
    }

    /// The client closed the control connection.
    pub fn handle_closed(&mut self) {
        match self.phase {
            Phase::Running => self.finish(End::ClientGone),
            // A client that just closes at the end is fine too.
            Phase::Goodbye => self.finish(End::Done),
            _ => self.fail(Error::Ended(format!(
                "the client {} closed the control connection",
                self.peer
            ))),
        }
    }

    /// The driver failed to read or write (the error says what).
    pub fn handle_failure(&mut self, error: Error) {
        self.fail(error);
    }

    /// The time is `now`; anything overdue ends the session.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_none_or(|due| now < due) {
            return;
        }
        let (phase, after, code) = match self.phase {
            Phase::Params => ("reading the parameters", self.limits.message_timeout, None),
            Phase::Streams => (
                "waiting for the data streams",
                self.limits.setup_timeout,
                None,
            ),
            Phase::Running if self.deadline.is_some_and(|d| now >= d) => {
                let total = self.deadline.zip(self.started).map(|(d, s)| d - s);
                (
                    "waiting for the client to end the test",
                    total.unwrap_or_default(),
                    Some(errors::IESERVERTESTDURATIONEXPIRED),
                )
            }
            Phase::Running => (
                "receiving data",
                self.limits.rcv_timeout,
                Some(errors::IENOMSG),
            ),
            Phase::Results => (
                "reading the client's results",
                self.limits.message_timeout,
                None,
            ),
            Phase::Goodbye => return self.finish(End::Done),
            Phase::Over => return,
        };
        if let Some(code) = code {
            self.actions.push_back(Action::SendError(code));
        }
        self.fail(with_deadline(phase, &self.peer, after));
    }

    fn fail(&mut self, error: Error) {
        self.finish(End::Failed(error));
    }

    fn finish(&mut self, end: End) {
        if self.phase != Phase::Over {
            self.phase = Phase::Over;
            self.deadline = None;
            self.actions.push_back(Action::Finish(end));
        }
    }

    /// Whether the test is UDP (its streams are set up one test at a
    /// time, as UDP hellos carry no cookie).
    pub fn is_udp(&self) -> bool {
        self.params
            .as_ref()
            .is_some_and(|p| p.protocol == Protocol::Udp)
    }
}

fn protocol(what: &str, source: ProtocolError) -> Error {
    Error::Protocol {
        what: what.into(),
        source,
    }
}

#[cfg(test)]
mod tests {
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
}
