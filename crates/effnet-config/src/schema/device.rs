//! Device entries: local indices and `effnet serve` addresses (`ws://HOST:PORT[/INDEX]`), as
//! written in `[runtime] devices` and on the command line.

use serde::{Deserialize, Serialize};

/// One entry of `[runtime] devices`: a local device index, or a device of an `effnet serve`
/// server given by its address (`ws://HOST:PORT` or `ws://HOST:PORT/INDEX`; checked by
/// [`RemoteDevice::parse`] when the config is validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    /// A device of the local backend, by index.
    Index(usize),
    /// A server address as written.
    Remote(String),
}

impl DeviceSpec {
    /// The remote device this entry names, if it is a valid address.
    pub fn remote(&self) -> Option<RemoteDevice> {
        match self {
            DeviceSpec::Index(_) => None,
            DeviceSpec::Remote(s) => RemoteDevice::parse(s).ok(),
        }
    }

    /// The same device the same way: `ws://h:1` and `ws://h:1/0` are one device.
    pub(super) fn canonical(&self) -> String {
        match (self, self.remote()) {
            (_, Some(r)) => r.to_string(),
            (DeviceSpec::Index(i), None) => i.to_string(),
            (DeviceSpec::Remote(s), None) => s.clone(),
        }
    }
}

impl From<usize> for DeviceSpec {
    fn from(i: usize) -> Self {
        DeviceSpec::Index(i)
    }
}

/// As in the TOML: `0` or `"ws://host:29501"`.
impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Index(i) => write!(f, "{i}"),
            DeviceSpec::Remote(s) => write!(f, "{s:?}"),
        }
    }
}

impl Serialize for DeviceSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            DeviceSpec::Index(i) => s.serialize_u64(*i as u64),
            DeviceSpec::Remote(a) => s.serialize_str(a),
        }
    }
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = DeviceSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a device index such as 0, or a server address such as \"ws://10.0.0.2:29501\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<DeviceSpec, E> {
                usize::try_from(v)
                    .map(DeviceSpec::Index)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<DeviceSpec, E> {
                usize::try_from(v)
                    .map(DeviceSpec::Index)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DeviceSpec, E> {
                Ok(DeviceSpec::Remote(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A device of an `effnet serve` server: `ws://HOST:PORT` (its device 0) or
/// `ws://HOST:PORT/INDEX` (the server's `--devices` entry at position INDEX).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteDevice {
    /// `ws://HOST:PORT`, the server's address (without the device index).
    pub url: String,
    /// Position in the server's device list.
    pub index: usize,
}

impl RemoteDevice {
    /// Parses `ws://HOST:PORT[/INDEX]`; the error is the reason, for a message naming the value.
    pub fn parse(s: &str) -> Result<Self, String> {
        const FORM: &str = "expected ws://HOST:PORT (the server's device 0) or ws://HOST:PORT/INDEX";
        if s.starts_with("wss://") {
            return Err(format!("burn's websocket transport has no TLS (wss://); {FORM} on a private network"));
        }
        let Some(rest) = s.strip_prefix("ws://") else {
            return Err(FORM.to_string());
        };
        let (authority, index) = match rest.split_once('/') {
            Some((a, i)) => {
                let index = i.parse::<usize>().map_err(|_| format!("device index {i:?} is not a number; {FORM}"))?;
                (a, index)
            }
            None => (rest, 0),
        };
        // `[v6]:port` or `host:port`; the port is required (there is no default).
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() => (h, p),
            _ => return Err(format!("missing HOST:PORT; {FORM}")),
        };
        let bracketed = host.starts_with('[') && host.ends_with(']') && host.len() > 2;
        if !bracketed && (host.contains([':', '[', ']']) || host.contains(|c: char| c.is_whitespace() || c == '@')) {
            return Err(format!("bad host {host:?} (write an IPv6 address as [ADDR]); {FORM}"));
        }
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(format!("bad port {port:?}: expected 1-65535")),
        }
        Ok(Self { url: format!("ws://{host}:{port}"), index })
    }
}

/// `ws://HOST:PORT/INDEX`.
impl std::fmt::Display for RemoteDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.url, self.index)
    }
}

/// Formats a device list as in the TOML: `[0, 1]`, `["ws://a:29501", "ws://b:29501"]`.
pub fn format_device_list(devices: &[DeviceSpec]) -> String {
    let items: Vec<String> = devices.iter().map(DeviceSpec::to_string).collect();
    format!("[{}]", items.join(", "))
}

/// Parses a device list as given on the command line: `0`, `0,1,2`, or server addresses
/// `ws://a:29501,ws://b:29501/1`.
pub fn parse_device_list(s: &str) -> Result<Vec<DeviceSpec>, String> {
    s.split(',')
        .map(|x| {
            let x = x.trim();
            if x.contains("://") {
                RemoteDevice::parse(x).map_err(|reason| format!("{x:?}: {reason}"))?;
                Ok(DeviceSpec::Remote(x.to_string()))
            } else {
                x.parse::<usize>().map(DeviceSpec::Index).map_err(|_| {
                    format!("{s:?}: expected comma-separated device indices such as 0,1, or server addresses such as ws://10.0.0.2:29501")
                })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::BackendKind;

    #[test]
    fn backend_names_and_device_lists_parse() {
        for b in BackendKind::ALL {
            assert_eq!(b.name().parse::<BackendKind>(), Ok(b));
        }
        assert_eq!(
            "metal".parse::<BackendKind>().unwrap_err(),
            "unknown backend \"metal\": expected one of flex, ndarray, wgpu, vulkan, cuda, remote"
        );
        let idx = |v: &[usize]| v.iter().map(|&i| DeviceSpec::Index(i)).collect::<Vec<_>>();
        assert_eq!(parse_device_list("0, 1,2"), Ok(idx(&[0, 1, 2])));
        assert!(parse_device_list("0,x").unwrap_err().contains("device indices"));
        assert_eq!(
            parse_device_list("ws://10.0.0.1:29501,ws://gpu-b:29501/1"),
            Ok(vec![DeviceSpec::Remote("ws://10.0.0.1:29501".into()), DeviceSpec::Remote("ws://gpu-b:29501/1".into())])
        );
        assert_eq!(
            parse_device_list("ws://a:29501,http://b:1").unwrap_err(),
            "\"http://b:1\": expected ws://HOST:PORT (the server's device 0) or ws://HOST:PORT/INDEX"
        );
    }

    #[test]
    fn remote_addresses_parse_to_url_and_index() {
        let r = |s: &str| RemoteDevice::parse(s).map(|d| (d.url, d.index));
        assert_eq!(r("ws://10.0.0.2:29501"), Ok(("ws://10.0.0.2:29501".into(), 0)));
        assert_eq!(r("ws://gpu-b:29501/3"), Ok(("ws://gpu-b:29501".into(), 3)));
        assert_eq!(r("ws://[fe80::1]:29501/1"), Ok(("ws://[fe80::1]:29501".into(), 1)));
        for (bad, why) in [
            ("ws://gpu-b", "missing HOST:PORT"),
            ("ws://:29501", "missing HOST:PORT"),
            ("ws://gpu-b:0", "bad port \"0\""),
            ("ws://gpu-b:70000", "bad port \"70000\""),
            ("ws://gpu-b:29501/x", "device index \"x\" is not a number"),
            ("ws://fe80::1:29501", "bad host \"fe80::1\""),
            ("wss://gpu-b:29501", "no TLS"),
            ("gpu-b:29501", "expected ws://HOST:PORT"),
        ] {
            let e = r(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
