//! PTY identity across devpts instances.
//!
//! Every devpts mount made with `newinstance` (every container's) has its own index space:
//! `/dev/pts/3` in a container is not the host's `/dev/pts/3`. A PTY is therefore named by
//! its instance, the device number its files carry (`st_dev`, `0:26` as mountinfo writes
//! it), and its index.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A device number, `major:minor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DevId {
    pub major: u32,
    pub minor: u32,
}

impl DevId {
    /// From a raw `dev_t` (glibc's and the kernel's `new_encode_dev` layout).
    pub fn from_raw(dev: u64) -> DevId {
        DevId {
            major: (((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff)) as u32,
            minor: (((dev >> 12) & 0xffff_ff00) | (dev & 0xff)) as u32,
        }
    }
}

impl fmt::Display for DevId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

impl FromStr for DevId {
    type Err = String;
    fn from_str(s: &str) -> Result<DevId, String> {
        let (a, b) = s.split_once(':').ok_or_else(|| format!("device {s:?}: expected MAJOR:MINOR"))?;
        let num = |x: &str| x.parse::<u32>().map_err(|_| format!("device {s:?}: expected MAJOR:MINOR"));
        Ok(DevId { major: num(a)?, minor: num(b)? })
    }
}

impl Serialize for DevId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DevId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<DevId, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A PTY: (devpts instance, index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PtyKey {
    pub devpts: DevId,
    pub index: u32,
}

/// One end as /proc showed it; either part may be unknown (an fdinfo without `tty-index`, a
/// master whose instance could not be asked).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PtyEnd {
    pub devpts: Option<DevId>,
    pub index: Option<u32>,
}

impl PtyEnd {
    pub fn key(&self) -> Option<PtyKey> {
        Some(PtyKey { devpts: self.devpts?, index: self.index? })
    }
}

/// The major of devpts slaves (`UNIX98_PTY_SLAVE_MAJOR`): the minor is the index, past 255
/// too (`/dev/pts/299` is `136:299`).
const SLAVE_MAJOR: u32 = 136;

/// The index of a devpts slave from its `st_rdev`; `None` for any other device.
pub fn slave_index(rdev: DevId) -> Option<u32> {
    (rdev.major == SLAVE_MAJOR).then_some(rdev.minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_decode_like_glibc() {
        // makedev(259, 1048577) uses the high bits of both halves.
        for (major, minor) in [(0, 26), (136, 3), (259, 1048577)] {
            assert_eq!(DevId::from_raw(libc::makedev(major, minor)), DevId { major, minor });
        }
    }

    #[test]
    fn slave_indexes_are_the_minor_of_major_136() {
        assert_eq!(slave_index(DevId { major: 136, minor: 3 }), Some(3));
        assert_eq!(slave_index(DevId { major: 136, minor: 299 }), Some(299), "measured: /dev/pts/299 is 136:299");
        assert_eq!(slave_index(DevId { major: 5, minor: 2 }), None, "/dev/ptmx is not a slave");
    }

    #[test]
    fn device_ids_round_trip_as_major_colon_minor() {
        let d = DevId { major: 0, minor: 26 };
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"0:26\"");
        assert_eq!(serde_json::from_str::<DevId>("\"0:26\"").unwrap(), d);
        assert!(serde_json::from_str::<DevId>("\"26\"").is_err());
        assert!("0:x".parse::<DevId>().is_err());
    }
}
