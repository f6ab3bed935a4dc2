-- Folder libraries: each file's size and modification time as last seen (see
-- migrations/sqlite/0003_library_files.sql).
ALTER TABLE images ADD COLUMN file_size BIGINT;
ALTER TABLE images ADD COLUMN file_mtime_ns BIGINT;
