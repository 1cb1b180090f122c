//! Units and figures shared by every subsystem, written as iperf3 writes
//! them: bytes with 1024-based units ("3.47 GBytes"), rates with
//! 1000-based ones ("29.8 Gbits/sec"), and iperf3's `-f` choice.

/// How to scale figures (iperf3's `-f`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// Pick a unit per figure (iperf3's default).
    #[default]
    Adaptive,
    /// A fixed unit: b'k' 'm' 'g' 't' for bits, b'K' 'M' 'G' 'T' for bytes.
    Fixed(u8),
}

/// Formats a number as iperf3 does: two decimals below 10, one below 100.
fn number(value: f64) -> String {
    if value < 9.995 {
        format!("{value:4.2}")
    } else if value < 99.95 {
        format!("{value:4.1}")
    } else {
        format!("{value:4.0}")
    }
}

/// Bytes with a 1024-based unit ("3.47 GBytes").
pub fn bytes(value: u64, format: Format) -> String {
    let v = value as f64;
    let units = [
        (1u64 << 40, "TBytes"),
        (1 << 30, "GBytes"),
        (1 << 20, "MBytes"),
        (1 << 10, "KBytes"),
    ];
    if let Format::Fixed(unit) = format {
        let div = match unit.to_ascii_uppercase() {
            b'T' => units[0],
            b'G' => units[1],
            b'M' => units[2],
            b'K' => units[3],
            _ => (1, "Bytes"),
        };
        return format!("{} {}", number(v / div.0 as f64), div.1);
    }
    for (div, name) in units {
        if v >= div as f64 {
            return format!("{} {name}", number(v / div as f64));
        }
    }
    format!("{} Bytes", number(v))
}

/// Bytes in sonde's own lines (not iperf3's layout): 1024-based units
/// in IEC names, three significant digits, no padding ("2.86 MiB",
/// "560 MiB", "512 B").
pub fn size(value: u64) -> String {
    let units = [
        (1u64 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    for (div, name) in units {
        if value >= div {
            return format!("{} {name}", number(value as f64 / div as f64).trim_start());
        }
    }
    format!("{value} B")
}

/// A rate in sonde's own lines, scaled to its size ("100 Mbit/s",
/// "1.10 Gbit/s", never "0.10 Gbit/s").
pub fn rate(bits_per_sec: f64) -> String {
    let units = [
        (1e12, "Tbit/s"),
        (1e9, "Gbit/s"),
        (1e6, "Mbit/s"),
        (1e3, "kbit/s"),
    ];
    for (div, name) in units {
        if bits_per_sec >= div {
            return format!("{} {name}", number(bits_per_sec / div).trim_start());
        }
    }
    format!("{} bit/s", number(bits_per_sec.max(0.0)).trim_start())
}

/// A count with thousands separators ("50,000,000").
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate with a 1000-based unit ("29.8 Gbits/sec"); byte formats print
/// bytes per second.
pub fn bitrate(bits_per_sec: f64, format: Format) -> String {
    let units = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")];
    match format {
        Format::Fixed(unit) if unit.is_ascii_uppercase() => {
            let div = units
                .iter()
                .find(|(_, n)| n.as_bytes()[0] == unit)
                .map_or(1.0, |u| u.0);
            format!(
                "{} {}Bytes/sec",
                number(bits_per_sec / 8.0 / div),
                char::from(unit)
            )
        }
        Format::Fixed(unit) => {
            let upper = unit.to_ascii_uppercase();
            let div = units
                .iter()
                .find(|(_, n)| n.as_bytes()[0] == upper)
                .map_or(1.0, |u| u.0);
            format!(
                "{} {}bits/sec",
                number(bits_per_sec / div),
                char::from(upper)
            )
        }
        Format::Adaptive => {
            for (div, name) in units {
                if bits_per_sec >= div {
                    return format!("{} {name}bits/sec", number(bits_per_sec / div));
                }
            }
            format!("{} bits/sec", number(bits_per_sec))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sondes_own_units_scale_and_never_pad() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(3_000_000), "2.86 MiB");
        assert_eq!(size(560 << 20), "560 MiB");
        assert_eq!(rate(100e6), "100 Mbit/s");
        assert_eq!(rate(1.1e9), "1.10 Gbit/s");
        assert_eq!(rate(58.5e6), "58.5 Mbit/s");
        assert_eq!(count(50_000_000), "50,000,000");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
    }

    #[test]
    fn units_follow_iperf3() {
        assert_eq!(bytes(3_725_000_000, Format::Adaptive), "3.47 GBytes");
        assert_eq!(bytes(132_000, Format::Adaptive), " 129 KBytes");
        assert_eq!(
            bitrate(29_800_000_000.0, Format::Adaptive),
            "29.8 Gbits/sec"
        );
        assert_eq!(bitrate(1_050_000.0, Format::Adaptive), "1.05 Mbits/sec");
        assert_eq!(bitrate(1e9, Format::Fixed(b'm')), "1000 Mbits/sec");
        assert_eq!(bitrate(8e6, Format::Fixed(b'M')), "1.00 MBytes/sec");
    }
}
