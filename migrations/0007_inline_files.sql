-- Inline small files (issue 13 §2): a regular file whose data ends at or below
-- limits.inlineFileBytesMax keeps its bytes in its inode row, committed with the namespace
-- change that made it, instead of in a pack. `inline_data` holds bytes [0, length) of the
-- file; bytes from there to `size` are zeros. A row holds inline data or extents, never both.
-- The background packer later moves inline data of the head layer into packs (extents), so
-- sealed layers (snapshots) may keep inline rows for ever: they are read like any other row.
ALTER TABLE inodes ADD COLUMN inline_data bytea;
-- NOT VALID: enforced for every new row without scanning the existing ones (none has inline data).
ALTER TABLE inodes ADD CONSTRAINT inodes_inline_or_extents
  CHECK (inline_data IS NULL OR extents IS NULL) NOT VALID;
-- The packer's work list: inline rows of one layer (packed rows leave the index).
CREATE INDEX inodes_inline ON inodes (layer_id, ino) WHERE inline_data IS NOT NULL;
