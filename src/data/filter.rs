//! Which images a search may return, by what is known about them (see [`super::metadata`]): the
//! service builds one [`Filter`] from a request, the index applies it while it searches (the
//! catalog turns it into SQL: see `catalog::filter`).

use super::metadata::{FieldValue, GeoPoint, TimeBound};

/// Both ends optional; each inclusive or exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Range<T> {
    pub lower: Option<Bound<T>>,
    pub upper: Option<Bound<T>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bound<T> {
    pub value: T,
    pub inclusive: bool,
}

/// How one user field must match.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldMatch {
    /// Equal to this value (for a list field: one of its values is).
    Equals(FieldValue),
    /// One of these values.
    AnyOf(Vec<FieldValue>),
    /// A number range, or a date range when the bounds are dates.
    Numbers(Range<f64>),
    Dates(Range<i64>),
}

/// An area on the map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Area {
    /// south ≤ lat ≤ north; west ≤ lon ≤ east (west > east crosses the antimeridian).
    Box {
        south: f64,
        west: f64,
        north: f64,
        east: f64,
    },
    /// Within `km` of a point (great-circle distance, by an equirectangular approximation that
    /// is within 0.5% up to a few hundred km away from the poles).
    Near { centre: GeoPoint, km: f64 },
}

/// A condition on an image. Conditions on a field an image lacks are false (and their `Not` is
/// true): "not taken with a Canon" includes photos with no camera recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    All(Vec<Filter>),
    Any(Vec<Filter>),
    Not(Box<Filter>),
    /// Taken-at within a range; wall-clock bounds compare the photo's wall clock, instant bounds
    /// its instant (see [`TimeBound`]).
    TakenAt(Range<TimeBound>),
    /// In this folder or below it (`/`-separated, no leading or trailing `/`; `""` is the top).
    Folder(String),
    /// EXIF make / model, compared without case; any of the given names.
    CameraMake(Vec<String>),
    CameraModel(Vec<String>),
    Width(Range<f64>),
    Height(Range<f64>),
    FileSize(Range<f64>),
    /// Has a GPS position in this area.
    Location(Area),
    /// Has (or lacks) a GPS position / a taken-at time.
    HasLocation(bool),
    HasTakenAt(bool),
    Field {
        name: String,
        matches: FieldMatch,
    },
    /// Not this image (a "more like this" query's own image).
    NotImage(super::ImageId),
}

impl Filter {
    /// `a AND b`, flattening.
    pub fn and(self, other: Filter) -> Filter {
        match self {
            Filter::All(mut v) => {
                v.push(other);
                Filter::All(v)
            }
            f => Filter::All(vec![f, other]),
        }
    }

    /// Conditions in the tree (a bound on what one query asks of the database).
    pub fn size(&self) -> usize {
        match self {
            Filter::All(v) | Filter::Any(v) => 1 + v.iter().map(Filter::size).sum::<usize>(),
            Filter::Not(f) => 1 + f.size(),
            _ => 1,
        }
    }
}
