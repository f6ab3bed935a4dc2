-- Folder libraries (`xmodal ingest --format folder`): each file's size and modification time as
-- last seen, so a rescan decides "unchanged" from a stat instead of reading the file.
ALTER TABLE images ADD COLUMN file_size INTEGER;
ALTER TABLE images ADD COLUMN file_mtime_ns INTEGER;
