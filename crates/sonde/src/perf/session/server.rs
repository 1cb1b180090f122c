//! The server's side of an iperf3 control session, as a state machine:
//! parameters, then the data streams, the test, the results and the
//! client's goodbye; the server's own limits (test length, total rate)
//! checked on the way, and a deadline for every phase.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Expect, with_deadline};
use crate::error::Error;
use crate::wire::iperf::auth::Verifier;
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
    /// iperf3's authentication: a test whose token this does not accept
    /// is refused.
    pub auth: Option<Arc<Verifier>>,
    /// This server has a certificate and agrees to TLS data streams when
    /// a sonde client asks (`sonde_tls`); without one it does not answer
    /// the request, and the client says so.
    pub tls: bool,
}

/// A new test's parameters, parsed and checked against the server's
/// limits by [`ServerSession::judge`]: all but iperf3's credentials.
#[derive(Debug)]
pub struct Judged(Params);

/// Why parameters were refused: the iperf3 code to tell the client (when
/// there is one) and the error.
pub type Refused = (Option<i32>, Error);

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
    /// The Unix time at an instant, for the tokens' clock check.
    wall: Option<(Instant, i64)>,
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
            wall: None,
        }
    }

    /// Tells the session the Unix time at `now`, so that it can check the
    /// time in a client's credentials.
    pub fn with_wall_clock(mut self, now: Instant, unix: i64) -> Self {
        self.wall = Some((now, unix));
        self
    }

    /// The Unix time at `now`, as far as the session knows.
    fn unix_at(&self, now: Instant) -> i64 {
        self.wall.map_or(0, |(then, unix)| {
            let since = now.saturating_duration_since(then).as_secs();
            unix.saturating_add(i64::try_from(since).unwrap_or(i64::MAX))
        })
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
        match Self::judge(json, &self.limits) {
            Ok(Judged(params)) => self.accept(now, params),
            Err((code, error)) => self.refuse(code, error),
        }
    }

    /// Parses and checks a new test's parameters against `limits`, all
    /// but iperf3's credentials (an RSA decryption each, left to the
    /// test's own session, so a flood of bad tokens costs whoever judges
    /// first nothing): the server judges them before it gives a test a
    /// thread, and that thread's session starts from them
    /// ([`Self::with_judged`]).
    ///
    /// # Errors
    /// Why they were refused: the iperf3 code to tell the client, when
    /// there is one, and the error.
    pub fn judge(
        json: Result<Value, ProtocolError>,
        limits: &ServerLimits,
    ) -> Result<Judged, Refused> {
        let what = "reading the parameters";
        let json = json.map_err(|source| (Some(errors::IERECVPARAMS), protocol(what, source)))?;
        let params = Params::from_json(&json).map_err(|source| (None, protocol(what, source)))?;
        check_limits(limits, &params).map_err(|(code, error)| (Some(code), error))?;
        Ok(Judged(params))
    }

    /// Goes on from parameters the client was asked for before this
    /// session began and that [`Self::judge`] took: nothing is asked
    /// again, and the credentials are checked now.
    pub fn with_judged(mut self, now: Instant, judged: Judged) -> Self {
        if self.phase == Phase::Params {
            self.actions.clear();
            self.accept(now, judged.0);
        }
        self
    }

    /// Judged parameters: the credentials checked, then the test's
    /// streams asked for.
    fn accept(&mut self, now: Instant, mut params: Params) {
        if let Some(verifier) = &self.limits.auth
            && let Err(e) = verifier.check(params.authtoken.as_deref(), self.unix_at(now))
        {
            return self.refuse(Some(errors::IEAUTHTEST), Error::Auth(e));
        }
        if params.tls && self.limits.tls {
            self.actions.push_back(Action::Send(TestState::SondeTls));
        }
        params.tls &= self.limits.tls;
        self.params = Some(params);
        self.phase = Phase::Streams;
        self.deadline = Some(now + self.limits.setup_timeout);
        self.actions.push_back(Action::CreateStreams);
    }

    fn refuse(&mut self, code: Option<i32>, error: Error) {
        if let Some(code) = code {
            self.actions.push_back(Action::SendError(code));
        }
        self.fail(error);
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

/// Checks parameters against the server's own limits (all but the
/// credentials, which the session checks as it accepts them).
fn check_limits(limits: &ServerLimits, params: &Params) -> Result<(), (i32, Error)> {
    params
        .validate()
        .map_err(|(code, source)| (code, protocol("checking the parameters", source)))?;
    let total = u64::from(params.time) + u64::from(params.omit);
    if let Some(max) = limits.max_duration
        && (params.time == 0 || total > max.as_secs())
    {
        let e = Error::Invalid(format!(
            "test of {total} s exceeds the server's maximum of {} s",
            max.as_secs()
        ));
        return Err((errors::IEMAXSERVERTESTDURATIONEXCEEDED, e));
    }
    if let Some(limit) = limits.bitrate_limit {
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

fn protocol(what: &str, source: ProtocolError) -> Error {
    Error::Protocol {
        what: what.into(),
        source,
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
