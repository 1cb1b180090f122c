//! The client's side of an iperf3 control session, as a state machine:
//! it answers the server's state bytes (parameters, streams, start,
//! results, display), ends the test when the driver says it is over, and
//! turns the server's refusals and errors into the matching [`Error`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Expect, with_deadline};
use crate::error::Error;
use crate::wire::iperf::results::Results;
use crate::wire::iperf::state::TestState;
use crate::wire::iperf::{MAX_RESULTS_LEN, ProtocolError};

/// What the driver does next.
#[derive(Debug)]
pub enum Action {
    /// Write a state byte.
    Send(TestState),
    /// Write this JSON (the parameters).
    SendJson(Value),
    /// Connect the data streams.
    ConnectStreams,
    /// Start measuring; end with [`ClientSession::handle_test_over`].
    StartTest,
    /// Write this side's results.
    SendResults,
    /// The server's results arrived.
    ResultsIn(Box<Results>),
    /// The session is over.
    Finish(End),
}

/// How a client session ended.
#[derive(Debug)]
pub enum End {
    /// The test ran and the results were exchanged.
    Done,
    /// The driver stopped the test (Ctrl-C); the server was told.
    Interrupted,
    /// It failed.
    Failed(Error),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Before the test: parameters, streams.
    Setup,
    Running,
    /// After TEST_END: waiting for EXCHANGE_RESULTS, then DISPLAY_RESULTS.
    Ending,
    /// The server's results are being read.
    Results,
    /// A SERVER_ERROR's code and errno are being read.
    ServerError,
    Over,
}

/// One test's control session, seen from the client. No sockets and no
/// clock: the driver passes what arrived and the time.
#[derive(Debug)]
pub struct ClientSession {
    params: Value,
    peer: String,
    message_timeout: Duration,
    phase: Phase,
    deadline: Option<Instant>,
    actions: VecDeque<Action>,
    /// The parameters ask for TLS data streams (sonde's `sonde_tls`)...
    tls_asked: bool,
    /// ...and the server agreed (`SONDE_TLS` before `CREATE_STREAMS`).
    tls_agreed: bool,
}

impl ClientSession {
    /// A session with the server at `peer`, to which the cookie was just
    /// sent; `params` is the parameters JSON.
    pub fn new(
        now: Instant,
        peer: impl Into<String>,
        params: Value,
        message_timeout: Duration,
    ) -> Self {
        Self {
            tls_asked: params.get("sonde_tls").is_some(),
            tls_agreed: false,
            params,
            peer: peer.into(),
            message_timeout,
            phase: Phase::Setup,
            deadline: Some(now + message_timeout),
            actions: VecDeque::new(),
        }
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// What to read from the server now.
    pub fn poll_read(&self) -> Expect {
        match self.phase {
            Phase::Setup | Phase::Running | Phase::Ending => Expect::State,
            Phase::Results => Expect::Json {
                max: MAX_RESULTS_LEN,
            },
            Phase::ServerError => Expect::ServerError,
            Phase::Over => Expect::Nothing,
        }
    }

    /// When [`Self::handle_timeout`] is due (never while the test runs:
    /// the test's own length bounds it).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the test is running (the driver measures and polls).
    pub fn is_running(&self) -> bool {
        self.phase == Phase::Running
    }

    /// A state byte from the server.
    pub fn handle_state(&mut self, now: Instant, state: TestState) {
        self.deadline = Some(now + self.message_timeout);
        match (self.phase, state) {
            (_, TestState::AccessDenied) => self.fail(Error::Busy),
            (_, TestState::ServerError) => self.phase = Phase::ServerError,
            (_, TestState::ServerTerminate) => {
                self.fail(Error::Ended("the server has terminated".into()));
            }
            (Phase::Setup, TestState::ParamExchange) => {
                self.actions
                    .push_back(Action::SendJson(self.params.clone()));
            }
            (Phase::Setup, TestState::SondeTls) if self.tls_asked => self.tls_agreed = true,
            (Phase::Setup, TestState::CreateStreams) if self.tls_asked && !self.tls_agreed => {
                self.fail(Error::Ended(format!(
                    "{} did not agree to TLS: a sonde `perf -s` agrees when started with --tls, a stock iperf3 has no TLS (run without --tls)",
                    self.peer
                )));
            }
            (Phase::Setup, TestState::CreateStreams) => {
                self.actions.push_back(Action::ConnectStreams);
            }
            (Phase::Setup, TestState::TestStart) => {}
            (Phase::Setup, TestState::TestRunning) => {
                self.phase = Phase::Running;
                self.deadline = None;
                self.actions.push_back(Action::StartTest);
            }
            (Phase::Ending, TestState::ExchangeResults) => {
                self.phase = Phase::Results;
                self.actions.push_back(Action::SendResults);
            }
            (Phase::Ending, TestState::DisplayResults) => {
                self.actions.push_back(Action::Send(TestState::IperfDone));
                self.finish(End::Done);
            }
            (_, other) => self.fail(Error::Ended(format!(
                "the server sent an unexpected {other}"
            ))),
        }
    }

    /// The driver ended the test: its length or count was reached, or
    /// (`interrupted`) it was stopped.
    pub fn handle_test_over(&mut self, now: Instant, interrupted: bool) {
        if self.phase != Phase::Running {
            return;
        }
        if interrupted {
            self.actions
                .push_back(Action::Send(TestState::ClientTerminate));
            return self.finish(End::Interrupted);
        }
        self.phase = Phase::Ending;
        self.deadline = Some(now + self.message_timeout);
        self.actions.push_back(Action::Send(TestState::TestEnd));
    }

    /// The server's results (the one JSON message it sends), or why they
    /// could not be read.
    pub fn handle_json(&mut self, now: Instant, json: Result<Value, ProtocolError>) {
        if self.phase != Phase::Results {
            return self.fail(Error::Ended("results out of turn".into()));
        }
        match json.and_then(|json| Results::from_json(&json)) {
            Ok(results) => {
                self.phase = Phase::Ending;
                self.deadline = Some(now + self.message_timeout);
                self.actions.push_back(Action::ResultsIn(Box::new(results)));
            }
            Err(source) => self.fail(Error::Protocol {
                what: "reading the server's results".into(),
                source,
            }),
        }
    }

    /// The code and errno that followed `SERVER_ERROR`.
    pub fn handle_server_error(&mut self, code: i32, errno: i32) {
        self.fail(Error::ServerError { code, errno });
    }

    /// A byte that is no state of iperf3's arrived where a state byte was
    /// due: before the test, the peer is not an iperf3 server at all.
    pub fn handle_unknown_state(&mut self, byte: u8, error: Error) {
        if self.phase == Phase::Setup {
            return self.fail(Error::Ended(format!(
                "{} does not speak iperf3's protocol (it sent the byte 0x{byte:02x} where a state was due)",
                self.peer
            )));
        }
        self.fail(error);
    }

    /// The server closed the control connection.
    pub fn handle_closed(&mut self) {
        let text = match self.phase {
            Phase::Running => "the control socket has closed unexpectedly".to_string(),
            _ => format!("the server {} closed the control connection", self.peer),
        };
        self.fail(Error::Ended(text));
    }

    /// The driver failed to read or write (the error says what).
    pub fn handle_failure(&mut self, error: Error) {
        self.fail(error);
    }

    /// The time is `now`; a server silent past its deadline ends it.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_some_and(|due| now >= due) {
            let error = with_deadline("waiting for the server", &self.peer, self.message_timeout);
            self.fail(error);
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const WAIT: Duration = Duration::from_secs(30);

    fn drain(session: &mut ClientSession) -> Vec<String> {
        std::iter::from_fn(|| session.poll_action())
            .map(|a| match a {
                Action::Send(s) => format!("send {s:?}"),
                Action::SendJson(_) => "params".into(),
                Action::ConnectStreams => "connect".into(),
                Action::StartTest => "start".into(),
                Action::SendResults => "results".into(),
                Action::ResultsIn(_) => "theirs".into(),
                Action::Finish(End::Done) => "done".into(),
                Action::Finish(End::Interrupted) => "interrupted".into(),
                Action::Finish(End::Failed(e)) => format!("failed: {e}"),
            })
            .collect()
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum At {
        Setup,
        Running,
        Ending,
        Results,
    }

    fn at(at: At, t0: Instant) -> ClientSession {
        let mut s = ClientSession::new(t0, "server", json!({"tcp": true}), WAIT);
        if at == At::Setup {
            return s;
        }
        for state in [
            TestState::ParamExchange,
            TestState::CreateStreams,
            TestState::TestStart,
            TestState::TestRunning,
        ] {
            s.handle_state(t0, state);
        }
        drain(&mut s);
        if at == At::Running {
            return s;
        }
        s.handle_test_over(t0, false);
        drain(&mut s);
        if at == At::Ending {
            return s;
        }
        s.handle_state(t0, TestState::ExchangeResults);
        drain(&mut s);
        s
    }

    #[test]
    fn tls_asked_for_needs_the_servers_agreement_before_the_streams() {
        let t0 = Instant::now();
        let asked = || ClientSession::new(t0, "server", json!({"tcp": true, "sonde_tls": 1}), WAIT);
        let mut agreed = asked();
        for state in [
            TestState::ParamExchange,
            TestState::SondeTls,
            TestState::CreateStreams,
        ] {
            agreed.handle_state(t0, state);
        }
        assert_eq!(drain(&mut agreed), ["params", "connect"]);
        let mut stock = asked();
        for state in [TestState::ParamExchange, TestState::CreateStreams] {
            stock.handle_state(t0, state);
        }
        let actions = drain(&mut stock);
        assert!(actions[1].contains("did not agree to TLS"), "{actions:?}");
        // A client that did not ask never takes the agreement.
        let mut plain = at(At::Setup, t0);
        plain.handle_state(t0, TestState::SondeTls);
        assert!(drain(&mut plain)[0].starts_with("failed"));
    }

    #[test]
    fn a_whole_test_in_order() {
        let t0 = Instant::now();
        let mut s = ClientSession::new(t0, "server", json!({"tcp": true}), WAIT);
        assert_eq!(s.poll_read(), Expect::State);
        assert_eq!(s.poll_timeout(), Some(t0 + WAIT));
        let steps: [(TestState, &[&str]); 4] = [
            (TestState::ParamExchange, &["params"]),
            (TestState::CreateStreams, &["connect"]),
            (TestState::TestStart, &[]),
            (TestState::TestRunning, &["start"]),
        ];
        for (state, want) in steps {
            s.handle_state(t0, state);
            assert_eq!(drain(&mut s), want, "{state}");
        }
        assert!(s.is_running());
        assert_eq!(s.poll_timeout(), None, "the test's own length bounds it");
        s.handle_test_over(t0, false);
        assert_eq!(drain(&mut s), ["send TestEnd"]);
        s.handle_state(t0, TestState::ExchangeResults);
        assert_eq!(drain(&mut s), ["results"]);
        assert_eq!(
            s.poll_read(),
            Expect::Json {
                max: MAX_RESULTS_LEN
            }
        );
        s.handle_json(t0, Ok(json!({"cpu_util_total": 2.0, "streams": []})));
        assert_eq!(drain(&mut s), ["theirs"]);
        s.handle_state(t0, TestState::DisplayResults);
        assert_eq!(drain(&mut s), ["send IperfDone", "done"]);
    }

    #[test]
    fn every_state_byte_in_every_phase() {
        let t0 = Instant::now();
        for state in TestState::ALL {
            for phase in [At::Setup, At::Running, At::Ending] {
                let mut s = at(phase, t0);
                s.handle_state(t0, state);
                let got = drain(&mut s);
                let want: Vec<String> = match (phase, state) {
                    (_, TestState::AccessDenied) => {
                        vec!["failed: the server is busy running a test. try again later".into()]
                    }
                    (_, TestState::ServerError) => vec![],
                    (_, TestState::ServerTerminate) => {
                        vec!["failed: the server has terminated".into()]
                    }
                    (At::Setup, TestState::ParamExchange) => vec!["params".into()],
                    (At::Setup, TestState::CreateStreams) => vec!["connect".into()],
                    (At::Setup, TestState::TestStart) => vec![],
                    (At::Setup, TestState::TestRunning) => vec!["start".into()],
                    (At::Ending, TestState::ExchangeResults) => vec!["results".into()],
                    (At::Ending, TestState::DisplayResults) => {
                        vec!["send IperfDone".into(), "done".into()]
                    }
                    (_, other) => vec![format!("failed: the server sent an unexpected {other}")],
                };
                assert_eq!(got, want, "{state} in {phase:?}");
                if state == TestState::ServerError {
                    assert_eq!(s.poll_read(), Expect::ServerError);
                    s.handle_server_error(112, 0);
                    let out = drain(&mut s);
                    assert!(
                        out[0].starts_with("failed: the server reported an error"),
                        "{out:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_interrupted_test_tells_the_server() {
        let t0 = Instant::now();
        let mut s = at(At::Running, t0);
        s.handle_test_over(t0, true);
        assert_eq!(drain(&mut s), ["send ClientTerminate", "interrupted"]);
    }

    #[test]
    fn a_silent_server_times_out_and_bad_results_fail() {
        let t0 = Instant::now();
        for phase in [At::Setup, At::Ending, At::Results] {
            let mut s = at(phase, t0);
            s.handle_timeout(t0 + WAIT - Duration::from_millis(1));
            assert!(drain(&mut s).is_empty());
            s.handle_timeout(t0 + WAIT);
            let out = drain(&mut s);
            assert!(
                out[0].contains("waiting for the server") && out[0].contains("timed out"),
                "{out:?}"
            );
        }
        let mut s = at(At::Running, t0);
        s.handle_timeout(t0 + WAIT * 10);
        assert!(drain(&mut s).is_empty(), "no deadline while running");
        let mut s = at(At::Results, t0);
        s.handle_json(t0, Err(ProtocolError::Json("nope".into())));
        let out = drain(&mut s);
        assert!(out[0].contains("reading the server's results"), "{out:?}");
        let mut s = at(At::Running, t0);
        s.handle_closed();
        assert_eq!(
            drain(&mut s),
            ["failed: the control socket has closed unexpectedly"]
        );
    }
}
