//! The socket and process settings behind iperf3's flags that stay on
//! this host (they are not parameters the peer sees): `--fq-rate` pacing,
//! `-S`/`--dscp` on either address family, `--snd-timeout`,
//! `--dont-fragment`, `--bind-dev`, `--cntl-ka`, `-m` (MPTCP), and `-A`
//! CPU affinity. Each says what it set, and fails with the system's reason.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};

/// Settings a client applies to its own sockets, beyond the parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalOptions {
    /// `--snd-timeout`: give up on unacknowledged data after this long
    /// (`TCP_USER_TIMEOUT`).
    pub snd_timeout: Option<Duration>,
    /// `--dont-fragment`: set DF on UDP datagrams (IPv4).
    pub dont_fragment: bool,
    /// `--bind-dev` (or `%DEV`): bind every socket to this interface.
    pub bind_device: Option<String>,
    /// `--cntl-ka`: keepalive on the control connection (idle, interval,
    /// count; `None` parts use the system's).
    pub control_keepalive: Option<Keepalive>,
    /// `-m`: data streams over MPTCP.
    pub mptcp: bool,
}

/// `--cntl-ka`'s three numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first probe.
    pub idle: Option<Duration>,
    /// Time between probes.
    pub interval: Option<Duration>,
    /// Probes before the connection is dropped.
    pub count: Option<u32>,
}

impl Keepalive {
    /// Parses `IDLE/INTV/CNT` (seconds, seconds, count; any part may be
    /// empty).
    ///
    /// # Errors
    /// A part that is not a number.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.split('/');
        let mut next = || parts.next().map(str::trim).filter(|p| !p.is_empty());
        let num = |p: Option<&str>| -> Result<Option<u64>, String> {
            p.map(|p| {
                p.parse()
                    .map_err(|_| format!("'{p}' is not a number (IDLE/INTV/CNT)"))
            })
            .transpose()
        };
        let (idle, interval, count) = (num(next())?, num(next())?, num(next())?);
        Ok(Self {
            idle: idle.map(Duration::from_secs),
            interval: interval.map(Duration::from_secs),
            count: count.map(|c| u32::try_from(c).unwrap_or(u32::MAX)),
        })
    }
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    option: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: setsockopt reads an int from the pointer given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `--fq-rate`: the fair-queue pacing rate of a socket, in bit/s.
///
/// # Errors
/// When the kernel refuses `SO_MAX_PACING_RATE`.
pub fn set_fq_rate(sock: &impl AsRawFd, bits_per_sec: u64) -> io::Result<()> {
    let bytes = bits_per_sec / 8;
    let value: u64 = bytes;
    // SAFETY: the kernel takes a u32 or (since 4.13) a u64 here.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MAX_PACING_RATE,
            (&value as *const u64).cast(),
            std::mem::size_of::<u64>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The type of service (`-S`, `--dscp`), as IP_TOS or IPV6_TCLASS.
///
/// # Errors
/// When the kernel refuses it.
pub fn set_tos(sock: SockRef<'_>, tos: u32, ipv6: bool) -> io::Result<()> {
    if ipv6 {
        sock.set_tclass_v6(tos)
    } else {
        sock.set_tos_v4(tos)
    }
}

/// Applies the client's local TCP settings to a data socket.
///
/// # Errors
/// When the kernel refuses one.
pub fn apply_local_tcp(sock: SockRef<'_>, local: &LocalOptions) -> io::Result<()> {
    if let Some(limit) = local.snd_timeout {
        sock.set_tcp_user_timeout(Some(limit))?;
    }
    Ok(())
}

/// Applies the client's local UDP settings to a data socket.
///
/// # Errors
/// When the kernel refuses one.
pub fn apply_local_udp(sock: &impl AsRawFd, local: &LocalOptions, ipv6: bool) -> io::Result<()> {
    if local.dont_fragment && !ipv6 {
        set_dont_fragment(sock)?;
    }
    Ok(())
}

/// DF on an IPv4 socket's datagrams: too big for the path fails instead
/// of being fragmented.
///
/// # Errors
/// When the kernel refuses it.
pub fn set_dont_fragment(sock: &impl AsRawFd) -> io::Result<()> {
    setsockopt_int(
        sock.as_raw_fd(),
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        libc::IP_PMTUDISC_DO,
    )
}

/// Binds a socket to a network interface (`--bind-dev`).
///
/// # Errors
/// When the interface does not exist, or binding needs a privilege.
pub fn bind_device(sock: SockRef<'_>, device: Option<&str>) -> io::Result<()> {
    match device {
        Some(dev) => sock.bind_device(Some(dev.as_bytes())),
        None => Ok(()),
    }
}

/// `--cntl-ka` on the control connection.
///
/// # Errors
/// When the kernel refuses it.
pub fn set_control_keepalive(sock: SockRef<'_>, ka: Keepalive) -> io::Result<()> {
    let mut k = TcpKeepalive::new();
    if let Some(idle) = ka.idle {
        k = k.with_time(idle);
    }
    if let Some(interval) = ka.interval {
        k = k.with_interval(interval);
    }
    if let Some(count) = ka.count {
        k = k.with_retries(count);
    }
    if ka == Keepalive::default() {
        return sock.set_keepalive(true);
    }
    sock.set_tcp_keepalive(&k)
}

/// The kernel's `struct in6_flowlabel_req` (linux/in6.h).
#[repr(C)]
struct FlowLabelReq {
    dst: [u8; 16],
    label: u32,
    action: u8,
    share: u8,
    flags: u16,
    expires: u16,
    linger: u16,
    pad: u32,
}

const IPV6_FLOWLABEL_MGR: libc::c_int = 32;
const IPV6_FLOWINFO_SEND: libc::c_int = 33;
const IPV6_FL_A_GET: u8 = 0;
const IPV6_FL_S_ANY: u8 = 255;
const IPV6_FL_F_CREATE: u16 = 1;

/// `-L`: leases the IPv6 flow label `label` towards `dst` for a socket
/// and turns on sending it; returns the address to connect to, which
/// carries the label.
///
/// # Errors
/// When the kernel refuses the lease.
pub fn flow_label(
    sock: &impl AsRawFd,
    dst: std::net::SocketAddrV6,
    label: u32,
) -> io::Result<std::net::SocketAddrV6> {
    let label = label & 0xF_FFFF;
    let req = FlowLabelReq {
        dst: dst.ip().octets(),
        label: label.to_be(),
        action: IPV6_FL_A_GET,
        share: IPV6_FL_S_ANY,
        flags: IPV6_FL_F_CREATE,
        expires: 0,
        linger: 0,
        pad: 0,
    };
    // SAFETY: setsockopt reads the request struct from the pointer given.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IPV6,
            IPV6_FLOWLABEL_MGR,
            (&req as *const FlowLabelReq).cast(),
            std::mem::size_of::<FlowLabelReq>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    setsockopt_int(sock.as_raw_fd(), libc::IPPROTO_IPV6, IPV6_FLOWINFO_SEND, 1)?;
    Ok(std::net::SocketAddrV6::new(
        *dst.ip(),
        dst.port(),
        label,
        dst.scope_id(),
    ))
}

/// A server's listener settings: the interface (`--bind-dev`, `-B
/// ADDR%DEV`) and `-M`, which accepted streams inherit.
///
/// # Errors
/// When the kernel refuses one.
pub fn listener_options(
    listener: &std::net::TcpListener,
    device: Option<&str>,
    mss: Option<u32>,
) -> io::Result<()> {
    bind_device(SockRef::from(listener), device)?;
    if let Some(mss) = mss {
        SockRef::from(listener).set_tcp_mss(mss)?;
    }
    Ok(())
}

/// Whether this kernel has SCTP.
///
/// # Errors
/// The reason it does not.
pub fn probe_sctp() -> io::Result<()> {
    socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::from(libc::IPPROTO_SCTP)),
    )
    .map(drop)
}

/// IPPROTO_MPTCP: a TCP socket of this protocol is an MPTCP connection.
pub const IPPROTO_MPTCP: i32 = 262;

/// `-A`: runs the calling thread (and the threads it starts afterwards)
/// on CPU `core`.
///
/// # Errors
/// When the CPU does not exist or may not be used.
pub fn set_affinity(core: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET and sched_setaffinity read
    // and write only within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if core >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The CPUs the calling thread may run on.
pub fn affinity() -> Vec<usize> {
    // SAFETY: as in set_affinity.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..8 * std::mem::size_of::<libc::cpu_set_t>())
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// A DSCP value (`--dscp`): a number (0-63, decimal, octal or hex) or
/// one of the names iperf3 knows; returns the TOS byte (DSCP << 2).
///
/// # Errors
/// An unknown name or a number out of range.
pub fn parse_dscp(text: &str) -> Result<u32, String> {
    const NAMES: &[(&str, u32)] = &[
        ("cs0", 0),
        ("cs1", 8),
        ("cs2", 16),
        ("cs3", 24),
        ("cs4", 32),
        ("cs5", 40),
        ("cs6", 48),
        ("cs7", 56),
        ("af11", 10),
        ("af12", 12),
        ("af13", 14),
        ("af21", 18),
        ("af22", 20),
        ("af23", 22),
        ("af31", 26),
        ("af32", 28),
        ("af33", 30),
        ("af41", 34),
        ("af42", 36),
        ("af43", 38),
        ("ef", 46),
        ("va", 44),
        ("le", 1),
    ];
    let lower = text.to_ascii_lowercase();
    let dscp = match NAMES.iter().find(|(n, _)| *n == lower) {
        Some((_, v)) => *v,
        None => parse_int(text).ok_or_else(|| {
            format!("'{text}' is not a DSCP value (0-63 or a name such as ef, af11, cs1)")
        })?,
    };
    if dscp > 63 {
        return Err(format!("DSCP {dscp} is out of range (0-63)"));
    }
    Ok(dscp << 2)
}

/// A number in decimal, octal (`0` prefix) or hex (`0x`), as iperf3's
/// `-S` and `--dscp` take it.
pub fn parse_int(text: &str) -> Option<u32> {
    let t = text.trim();
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16).ok()
    } else if t.len() > 1 && t.starts_with('0') {
        u32::from_str_radix(&t[1..], 8).ok()
    } else {
        t.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dscp_and_tos_take_names_and_any_base() {
        assert_eq!(parse_dscp("ef"), Ok(46 << 2));
        assert_eq!(parse_dscp("AF11"), Ok(10 << 2));
        assert_eq!(parse_dscp("0x2e"), Ok(46 << 2));
        assert!(parse_dscp("64").is_err());
        assert!(parse_dscp("gold").is_err());
        assert_eq!(parse_int("52"), Some(52));
        assert_eq!(parse_int("064"), Some(52));
        assert_eq!(parse_int("0x34"), Some(52));
    }

    #[test]
    fn keepalive_parts_are_optional() {
        let k = Keepalive::parse("10/5/3").expect("three parts");
        assert_eq!(k.idle, Some(Duration::from_secs(10)));
        assert_eq!(k.interval, Some(Duration::from_secs(5)));
        assert_eq!(k.count, Some(3));
        assert_eq!(
            Keepalive::parse("/2").expect("one part").interval,
            Some(Duration::from_secs(2))
        );
        assert!(Keepalive::parse("x").is_err());
    }

    #[test]
    fn affinity_is_set_and_read_back() {
        let cpus = affinity();
        let Some(&first) = cpus.first() else { return };
        std::thread::spawn(move || {
            set_affinity(first).expect("a CPU this process may use");
            assert_eq!(affinity(), vec![first]);
        })
        .join()
        .expect("the thread");
    }
}

#[cfg(test)]
mod observed {
    //! Each setting read back from the kernel after it was made.
    use super::*;
    use std::net::{TcpListener, TcpStream, UdpSocket};

    fn getsockopt_int(fd: RawFd, level: libc::c_int, option: libc::c_int) -> libc::c_int {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into the int.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                level,
                option,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "getsockopt");
        value
    }

    fn pair(addr: &str) -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind(addr).expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        (client, server)
    }

    #[test]
    fn the_parameters_reach_the_data_sockets() {
        let params = crate::wire::iperf::params::Params {
            tos: 46 << 2,
            fqrate: 80_000_000,
            ..Default::default()
        };
        let (client, _server) = pair("127.0.0.1:0");
        crate::perf::stream::apply_tcp_options(&client, &params).expect("options");
        assert_eq!(
            getsockopt_int(client.as_raw_fd(), libc::IPPROTO_IP, libc::IP_TOS),
            46 << 2
        );
        let pacing = getsockopt_int(
            client.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MAX_PACING_RATE,
        );
        assert_eq!(pacing, 10_000_000, "bytes per second");
        let (v6, _peer) = pair("[::1]:0");
        crate::perf::stream::apply_tcp_options(&v6, &params).expect("options");
        assert_eq!(
            getsockopt_int(v6.as_raw_fd(), libc::IPPROTO_IPV6, libc::IPV6_TCLASS),
            46 << 2
        );
    }

    #[test]
    fn the_local_settings_reach_their_sockets() {
        let (client, _server) = pair("127.0.0.1:0");
        let local = LocalOptions {
            snd_timeout: Some(Duration::from_millis(1500)),
            dont_fragment: true,
            ..LocalOptions::default()
        };
        apply_local_tcp(SockRef::from(&client), &local).expect("tcp");
        assert_eq!(
            SockRef::from(&client).tcp_user_timeout().expect("read"),
            Some(Duration::from_millis(1500))
        );
        let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
        apply_local_udp(&udp, &local, false).expect("udp");
        assert_eq!(
            getsockopt_int(udp.as_raw_fd(), libc::IPPROTO_IP, libc::IP_MTU_DISCOVER),
            libc::IP_PMTUDISC_DO
        );
        let ka = Keepalive::parse("7/3/4").expect("keepalive");
        set_control_keepalive(SockRef::from(&client), ka).expect("keepalive");
        let s = SockRef::from(&client);
        assert!(s.keepalive().expect("read"));
        assert_eq!(
            s.tcp_keepalive_time().expect("read"),
            Duration::from_secs(7)
        );
        assert_eq!(
            s.tcp_keepalive_interval().expect("read"),
            Duration::from_secs(3)
        );
        assert_eq!(s.tcp_keepalive_retries().expect("read"), 4);
    }

    #[test]
    fn a_flow_label_is_leased_towards_the_peer() {
        let listener = TcpListener::bind("[::1]:0").expect("bind");
        let std::net::SocketAddr::V6(dst) = listener.local_addr().expect("addr") else {
            panic!("an IPv6 address");
        };
        let sock = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None)
            .expect("socket");
        let target = flow_label(&sock, dst, 0x1_2345).expect("the lease");
        assert_eq!(target.flowinfo(), 0x1_2345);
        sock.connect(&std::net::SocketAddr::V6(target).into())
            .expect("connect with the label");
        let leases =
            std::fs::read_to_string("/proc/net/ip6_flowlabel").expect("the kernel's leases");
        assert!(leases.to_ascii_lowercase().contains("12345"), "{leases}");
    }
}
