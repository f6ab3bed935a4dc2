//! When a photo was taken. EXIF stores the camera's wall clock (`DateTimeOriginal`) and, since
//! EXIF 2.31, its offset from UTC (`OffsetTimeOriginal`); older cameras record no offset. Both
//! readings are kept: the wall clock is what "photos from June" means to the person who took
//! them, the instant (wall clock minus offset) is what orders photos from several time zones.

use jiff::{civil, tz::Offset};

/// A photo's taken-at time: the camera's wall clock and, when recorded, its UTC offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TakenAt {
    pub local: civil::DateTime,
    pub offset: Option<Offset>,
}

impl TakenAt {
    /// The wall clock read as if it were UTC, in seconds: what local-time filters compare.
    pub fn local_seconds(&self) -> i64 {
        as_utc_seconds(self.local)
    }

    /// The instant in seconds since the Unix epoch; the wall clock itself when no offset is
    /// known (the best guess, and the order a camera without a clock zone gives).
    pub fn utc_seconds(&self) -> i64 {
        self.local_seconds() - self.offset.map_or(0, |o| i64::from(o.seconds()))
    }
}

impl std::fmt::Display for TakenAt {
    /// RFC 3339 with the offset when known (`2024-07-14T16:03:11+02:00`), else without one.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.local.strftime("%Y-%m-%dT%H:%M:%S"))?;
        if let Some(o) = self.offset {
            let s = o.seconds();
            let sign = if s < 0 { '-' } else { '+' };
            let m = s.unsigned_abs() / 60;
            write!(f, "{sign}{:02}:{:02}", m / 60, m % 60)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for TakenAt {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match parse_time_bound(s)? {
            TimeBound::Local(local) => Ok(Self {
                local,
                offset: None,
            }),
            TimeBound::Instant { local, offset } => Ok(Self {
                local,
                offset: Some(offset),
            }),
        }
    }
}

fn as_utc_seconds(dt: civil::DateTime) -> i64 {
    Offset::UTC.to_timestamp(dt).map_or(0, |t| t.as_second())
}

/// A bound of a taken-at filter: a wall-clock time (no offset given: compared with each photo's
/// own wall clock) or an instant (`Z` or `±hh:mm` given: compared with each photo's instant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBound {
    Local(civil::DateTime),
    Instant {
        local: civil::DateTime,
        offset: Offset,
    },
}

impl TimeBound {
    /// Seconds on the scale this bound compares on (see [`TakenAt::local_seconds`] and
    /// [`TakenAt::utc_seconds`]).
    pub fn seconds(&self) -> i64 {
        match *self {
            Self::Local(dt) => as_utc_seconds(dt),
            Self::Instant { local, offset } => as_utc_seconds(local) - i64::from(offset.seconds()),
        }
    }

    pub fn is_instant(&self) -> bool {
        matches!(self, Self::Instant { .. })
    }
}

/// By [`TimeBound::seconds`] (meaningful between bounds of one kind).
impl PartialOrd for TimeBound {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.seconds().cmp(&other.seconds()))
    }
}

/// `2024-06-01`, `2024-06-01T10:30`, `2024-06-01T10:30:00` (wall clock), or any of those with
/// `Z` or `±hh:mm` (an instant). A space may stand for `T`.
pub fn parse_time_bound(s: &str) -> Result<TimeBound, String> {
    let s = s.trim();
    let bad = || {
        format!(
            "{s:?} is not a date: use 2024-06-01, 2024-06-01T10:30:00 or 2024-06-01T10:30:00+02:00"
        )
    };
    if s.len() > 40 {
        return Err(bad());
    }
    let normal = s.replacen(' ', "T", 1);
    let (body, offset) = split_offset(&normal).ok_or_else(bad)?;
    let local = if body.len() == 10 {
        body.parse::<civil::Date>()
            .map_err(|_| bad())?
            .to_datetime(civil::Time::midnight())
    } else {
        body.parse::<civil::DateTime>().map_err(|_| bad())?
    };
    Ok(match offset {
        None => TimeBound::Local(local),
        Some(offset) => TimeBound::Instant { local, offset },
    })
}

/// Split a trailing `Z` / `±hh:mm` / `±hhmm` from a date-time (never from a bare date, whose
/// `-` separators would look like an offset).
fn split_offset(s: &str) -> Option<(&str, Option<Offset>)> {
    if let Some(body) = s.strip_suffix('Z').or_else(|| s.strip_suffix('z')) {
        return Some((body, Some(Offset::UTC)));
    }
    let Some(t) = s.find('T') else {
        return Some((s, None));
    };
    let time = &s[t + 1..];
    let Some(sign_at) = time.rfind(['+', '-']) else {
        return Some((s, None));
    };
    let (body, zone) = s.split_at(t + 1 + sign_at);
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = digits[2..].parse().ok()?;
    if hours > 23 || minutes > 59 {
        return None;
    }
    let offset = Offset::from_seconds(sign * (hours * 3600 + minutes * 60)).ok()?;
    Some((body, Some(offset)))
}

/// EXIF's `2024:07:14 16:03:11` and its `+02:00` (either may be blank or zeroed in the file).
pub(super) fn from_exif(datetime: &str, offset: Option<&str>) -> Option<TakenAt> {
    let d = datetime.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    if d.len() < 19 {
        return None;
    }
    let iso = format!("{}-{}-{}T{}", &d[0..4], &d[5..7], &d[8..10], &d[11..19]);
    let local = iso.parse::<civil::DateTime>().ok()?;
    let offset = offset
        .map(|o| o.trim_matches(|c: char| c == '\0' || c.is_whitespace()))
        .filter(|o| o.len() == 6)
        .and_then(|o| split_offset(&format!("2000-01-01T00:00:00{o}")).and_then(|(_, o)| o));
    Some(TakenAt { local, offset })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_wall_clock_unless_they_carry_an_offset() {
        let day = parse_time_bound("2024-06-01").unwrap();
        assert!(!day.is_instant());
        assert_eq!(day.seconds(), 1_717_200_000);
        let noon = parse_time_bound("2024-06-01 12:00").unwrap();
        assert_eq!(noon.seconds(), 1_717_200_000 + 12 * 3600);
        let z = parse_time_bound("2024-06-01T12:00:00Z").unwrap();
        assert!(z.is_instant());
        assert_eq!(z.seconds(), noon.seconds());
        let east = parse_time_bound("2024-06-01T12:00:00+02:00").unwrap();
        assert_eq!(east.seconds(), noon.seconds() - 2 * 3600);
        for bad in [
            "2024-13-01",
            "yesterday",
            "2024-06-01T25:00",
            "2024-06-01T10:00+2",
            "",
        ] {
            assert!(parse_time_bound(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exif_times_keep_their_offset_and_refuse_zeroed_dates() {
        let t = from_exif("2024:07:14 16:03:11", Some("+02:00")).unwrap();
        assert_eq!(t.to_string(), "2024-07-14T16:03:11+02:00");
        assert_eq!(t.utc_seconds(), t.local_seconds() - 7200);
        assert_eq!(t.to_string().parse::<TakenAt>().unwrap(), t);
        let plain = from_exif("2024:07:14 16:03:11\0", None).unwrap();
        assert_eq!(plain.to_string(), "2024-07-14T16:03:11");
        assert_eq!(plain.to_string().parse::<TakenAt>().unwrap(), plain);
        assert!(from_exif("0000:00:00 00:00:00", None).is_none());
        assert!(from_exif("    :  :     :  :  ", None).is_none());
        assert_eq!(
            from_exif("2024:07:14 16:03:11", Some("-05:30"))
                .unwrap()
                .to_string(),
            "2024-07-14T16:03:11-05:30"
        );
    }
}
