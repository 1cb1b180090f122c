//! The one-byte (signed) state codes of the control connection.

use std::fmt;

use super::ProtocolError;

/// A control-connection state; the doc of each variant gives its wire value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestState {
    /// 1: all streams connected; start the clocks.
    TestStart,
    /// 2: start moving data.
    TestRunning,
    /// 4: the client ended the test.
    TestEnd,
    /// 9: the server asks for the parameters.
    ParamExchange,
    /// 10: the server asks for the data streams.
    CreateStreams,
    /// 11: the server was stopped.
    ServerTerminate,
    /// 12: the client was stopped.
    ClientTerminate,
    /// 13: results are exchanged next.
    ExchangeResults,
    /// 14: results exchanged; the client may print.
    DisplayResults,
    /// 16: the client is done.
    IperfDone,
    /// -1: busy, or a bad stream cookie.
    AccessDenied,
    /// -2: a server error; two big-endian i32 follow (code, errno).
    ServerError,
    /// 64, sonde's own: the server agrees to the TLS data streams the
    /// client asked for (`sonde_tls`); sent only to a client that asked.
    SondeTls,
}

impl TestState {
    /// Every state iperf3 defines.
    pub const ALL: [Self; 12] = [
        Self::TestStart,
        Self::TestRunning,
        Self::TestEnd,
        Self::ParamExchange,
        Self::CreateStreams,
        Self::ServerTerminate,
        Self::ClientTerminate,
        Self::ExchangeResults,
        Self::DisplayResults,
        Self::IperfDone,
        Self::AccessDenied,
        Self::ServerError,
    ];

    /// The byte on the wire.
    pub fn to_wire(self) -> u8 {
        let value: i8 = match self {
            Self::TestStart => 1,
            Self::TestRunning => 2,
            Self::TestEnd => 4,
            Self::ParamExchange => 9,
            Self::CreateStreams => 10,
            Self::ServerTerminate => 11,
            Self::ClientTerminate => 12,
            Self::ExchangeResults => 13,
            Self::DisplayResults => 14,
            Self::IperfDone => 16,
            Self::AccessDenied => -1,
            Self::ServerError => -2,
            Self::SondeTls => 64,
        };
        value.to_be_bytes()[0]
    }

    /// Decodes a byte from the wire.
    ///
    /// # Errors
    /// [`ProtocolError::UnknownState`] for values iperf3 never sends.
    pub fn from_wire(byte: u8) -> Result<Self, ProtocolError> {
        let value = i8::from_be_bytes([byte]);
        Ok(match value {
            1 => Self::TestStart,
            2 => Self::TestRunning,
            4 => Self::TestEnd,
            9 => Self::ParamExchange,
            10 => Self::CreateStreams,
            11 => Self::ServerTerminate,
            12 => Self::ClientTerminate,
            13 => Self::ExchangeResults,
            14 => Self::DisplayResults,
            16 => Self::IperfDone,
            -1 => Self::AccessDenied,
            -2 => Self::ServerError,
            64 => Self::SondeTls,
            other => return Err(ProtocolError::UnknownState(other)),
        })
    }
}

impl fmt::Display for TestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::TestStart => "TEST_START",
            Self::TestRunning => "TEST_RUNNING",
            Self::TestEnd => "TEST_END",
            Self::ParamExchange => "PARAM_EXCHANGE",
            Self::CreateStreams => "CREATE_STREAMS",
            Self::ServerTerminate => "SERVER_TERMINATE",
            Self::ClientTerminate => "CLIENT_TERMINATE",
            Self::ExchangeResults => "EXCHANGE_RESULTS",
            Self::DisplayResults => "DISPLAY_RESULTS",
            Self::IperfDone => "IPERF_DONE",
            Self::AccessDenied => "ACCESS_DENIED",
            Self::ServerError => "SERVER_ERROR",
            Self::SondeTls => "SONDE_TLS",
        };
        write!(f, "{name}({})", i8::from_be_bytes([self.to_wire()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_values_round_trip_and_match_iperf3() {
        let golden = [
            (TestState::TestStart, 0x01),
            (TestState::TestRunning, 0x02),
            (TestState::TestEnd, 0x04),
            (TestState::ParamExchange, 0x09),
            (TestState::CreateStreams, 0x0A),
            (TestState::ServerTerminate, 0x0B),
            (TestState::ClientTerminate, 0x0C),
            (TestState::ExchangeResults, 0x0D),
            (TestState::DisplayResults, 0x0E),
            (TestState::IperfDone, 0x10),
            (TestState::AccessDenied, 0xFF),
            (TestState::ServerError, 0xFE),
        ];
        for (state, byte) in golden {
            assert_eq!(state.to_wire(), byte);
            assert_eq!(TestState::from_wire(byte), Ok(state));
        }
        for bad in [0u8, 3, 5, 8, 15, 17, 0x80] {
            assert!(TestState::from_wire(bad).is_err(), "{bad}");
        }
        assert_eq!(TestState::AccessDenied.to_string(), "ACCESS_DENIED(-1)");
    }
}
