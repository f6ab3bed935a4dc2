-- Encoder features of searchable items, written in the same transaction as the item itself, so
-- the indexes (derived data) can always be rebuilt or reconciled from the catalog alone.
CREATE TABLE vectors (
    feature_set TEXT NOT NULL,
    item        TEXT NOT NULL,              -- image id, or caption key "image_id#ordinal"
    image_id    TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    vector      BLOB NOT NULL,              -- little-endian f32
    PRIMARY KEY (feature_set, item)
);
CREATE INDEX vectors_by_image ON vectors (image_id);
