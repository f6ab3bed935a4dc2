-- What is known about a photo besides its pixels (src/data/metadata): EXIF, where its file sits,
-- and the user's own fields. One row per image that has any; deleted with the image.
CREATE TABLE image_metadata (
    image_id        TEXT PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    taken_at        TEXT,       -- RFC 3339, with the camera's offset when EXIF records one
    taken_local_s   BIGINT,    -- the camera's wall clock read as UTC, seconds (wall-clock filters)
    taken_utc_s     BIGINT,    -- the instant, seconds since the epoch (instant filters, date order)
    camera_make     TEXT,
    camera_model    TEXT,
    latitude        DOUBLE PRECISION,
    longitude       DOUBLE PRECISION,
    orientation     BIGINT,
    folder          TEXT,       -- '/'-separated; '' at a library's top
    file_name       TEXT,
    file_size       BIGINT,
    file_modified_s BIGINT
);
CREATE INDEX image_metadata_by_taken ON image_metadata (taken_utc_s);
CREATE INDEX image_metadata_by_folder ON image_metadata (folder);

-- The user's own fields: a row per value (a list field has several), typed so ranges compare
-- numbers and dates as numbers.
CREATE TABLE image_fields (
    image_id     TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    ordinal      BIGINT NOT NULL,  -- position in a list field
    kind         TEXT NOT NULL CHECK (kind IN ('text', 'number', 'bool', 'date')),
    text_value   TEXT,          -- text, date (as given), bool ('true' / 'false')
    number_value DOUBLE PRECISION           -- number, date (wall clock as UTC seconds), bool (1 / 0)
);
CREATE INDEX image_fields_by_text ON image_fields (name, text_value);
CREATE INDEX image_fields_by_number ON image_fields (name, number_value);
CREATE INDEX image_fields_by_image ON image_fields (image_id);
