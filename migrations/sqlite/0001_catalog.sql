-- The catalog: what images and captions exist, where their bytes are, which split they belong to,
-- and which feature sets and heads have been computed from them. The same tables exist for
-- Postgres under migrations/postgres.

CREATE TABLE datasets (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    format      TEXT NOT NULL,            -- flickr30k | coco | jsonl | upload | import
    source      TEXT NOT NULL,            -- where it was ingested from
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE images (
    id          TEXT PRIMARY KEY,         -- stable, URL-safe: [A-Za-z0-9._-], 1..128 chars
    dataset_id  INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    location    TEXT,                     -- file path, or NULL for imported features without files
    width       INTEGER,
    height      INTEGER,
    sha256      TEXT,
    split       TEXT CHECK (split IN ('train', 'val', 'test')),
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX images_by_dataset_split ON images (dataset_id, split);
CREATE INDEX images_by_sha256 ON images (sha256);

CREATE TABLE captions (
    id          INTEGER PRIMARY KEY,
    image_id    TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    ordinal     INTEGER NOT NULL,         -- 0-based position among the image's captions
    text        TEXT NOT NULL,
    UNIQUE (image_id, ordinal)
);

-- A feature set: one encoder (identified by its manifest's hash) applied to one modality.
CREATE TABLE feature_sets (
    id              TEXT PRIMARY KEY,     -- hash of encoder manifest + options
    encoder         TEXT NOT NULL,        -- model name, e.g. minilm-l6
    modality        TEXT NOT NULL CHECK (modality IN ('text', 'image')),
    manifest_sha256 TEXT NOT NULL,
    dims            INTEGER NOT NULL,
    options         TEXT NOT NULL,        -- JSON: pooling, normalisation, imported source, ...
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- Trained projection heads and the feature sets they expect.
CREATE TABLE heads (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    image_feature_set   TEXT NOT NULL REFERENCES feature_sets(id),
    text_feature_set    TEXT NOT NULL REFERENCES feature_sets(id),
    config              TEXT NOT NULL,    -- JSON
    location            TEXT NOT NULL,    -- directory holding the weights
    created_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
