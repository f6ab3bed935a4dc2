//! What a scene holds: objects of a shape, colour and size at a place, and the words for them.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    Circle,
    Square,
    Triangle,
    Star,
    Cross,
    Diamond,
}

impl Shape {
    pub const ALL: [Shape; 6] = [
        Shape::Circle,
        Shape::Square,
        Shape::Triangle,
        Shape::Star,
        Shape::Cross,
        Shape::Diamond,
    ];

    pub fn word(self) -> &'static str {
        match self {
            Self::Circle => "circle",
            Self::Square => "square",
            Self::Triangle => "triangle",
            Self::Star => "star",
            Self::Cross => "cross",
            Self::Diamond => "diamond",
        }
    }
}

/// Colour names with the RGB they are drawn in.
pub const COLOURS: [(&str, [u8; 3]); 10] = [
    ("red", [215, 35, 35]),
    ("green", [35, 160, 55]),
    ("blue", [35, 70, 215]),
    ("yellow", [240, 215, 35]),
    ("orange", [245, 135, 20]),
    ("purple", [125, 45, 165]),
    ("pink", [245, 125, 190]),
    ("white", [245, 245, 245]),
    ("black", [20, 20, 20]),
    ("brown", [115, 70, 30]),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    Small,
    Large,
}

impl Size {
    pub fn radius(self) -> f32 {
        match self {
            Self::Small => 20.0,
            Self::Large => 36.0,
        }
    }

    pub fn words(self) -> [&'static str; 2] {
        match self {
            Self::Small => ["small", "little"],
            Self::Large => ["large", "big"],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Place {
    Left,
    Right,
    Top,
    Bottom,
    Centre,
}

impl Place {
    pub const ALL: [Place; 5] = [
        Place::Left,
        Place::Right,
        Place::Top,
        Place::Bottom,
        Place::Centre,
    ];

    pub fn phrases(self) -> [&'static str; 2] {
        match self {
            Self::Left => ["on the left", "on the left side"],
            Self::Right => ["on the right", "on the right side"],
            Self::Top => ["at the top", "near the top"],
            Self::Bottom => ["at the bottom", "near the bottom"],
            Self::Centre => ["in the centre", "in the middle"],
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Object {
    pub shape: Shape,
    pub colour: &'static str,
    pub size: Size,
    /// Centre in pixels of the rendered image.
    pub x: f32,
    pub y: f32,
}

impl Object {
    pub fn name(&self) -> String {
        format!("{} {}", self.colour, self.shape.word())
    }
}

/// How `a` lies relative to `b`, along the axis where they differ most.
pub fn relation(a: &Object, b: &Object) -> &'static str {
    let (dx, dy) = (a.x - b.x, a.y - b.y);
    if dx.abs() >= dy.abs() {
        if dx < 0.0 {
            "left of"
        } else {
            "right of"
        }
    } else if dy < 0.0 {
        "above"
    } else {
        "below"
    }
}

pub fn inverse(rel: &str) -> &'static str {
    match rel {
        "left of" => "right of",
        "right of" => "left of",
        "above" => "below",
        _ => "above",
    }
}
