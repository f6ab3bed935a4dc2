-- Encoder features of searchable items (see migrations/sqlite/0002_vectors.sql), plus pgvector,
-- which holds the projected embeddings the replicas search (tables per vector space, created by
-- the service: their width depends on the heads).
CREATE TABLE vectors (
    feature_set TEXT NOT NULL,
    item        TEXT NOT NULL,
    image_id    TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    vector      BYTEA NOT NULL,
    PRIMARY KEY (feature_set, item)
);
CREATE INDEX vectors_by_image ON vectors (image_id);

CREATE EXTENSION IF NOT EXISTS vector;
