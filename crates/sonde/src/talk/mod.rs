//! The netcat subsystem: `connect` and `listen`. A TCP connection joined
//! to an input and an output with careful end-of-input rules
//! ([`relay`]), moved as cheaply as the kernel allows ([`pump`]); many
//! clients at once for `listen -k` ([`many`]); line-per-datagram UDP
//! ([`udp`]); the byte transforms both use ([`transform`]); port checks
//! (`connect -z`, [`scan`]); and a connection joined to a process
//! (`--exec`, [`exec`]).

pub mod exec;
pub mod many;
pub mod pump;
pub mod relay;
pub mod scan;
pub mod transform;
pub mod udp;
