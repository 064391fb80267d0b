-- Volume engine: copy-on-write metadata in layers. A layer holds inode and directory-entry rows
-- that override its parent's; sealed layers are immutable and shared by snapshots and forks.
CREATE TABLE layers (
  id bigserial PRIMARY KEY,
  team_id text NOT NULL,
  parent_id bigint REFERENCES layers (id),
  depth integer NOT NULL CHECK (depth >= 0),
  sealed boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX layers_parent ON layers (parent_id);

CREATE TABLE volumes (
  id uuid PRIMARY KEY,
  team_id text NOT NULL,
  head_layer_id bigint NOT NULL REFERENCES layers (id),
  source_volume_id uuid,
  default_posix_uid integer NOT NULL DEFAULT 0,
  default_posix_gid integer NOT NULL DEFAULT 0,
  access_mode text NOT NULL DEFAULT 'RWO' CHECK (access_mode IN ('RWO', 'ROX', 'RWX')),
  next_ino bigint NOT NULL,
  quota_bytes bigint,
  quota_inodes bigint,
  used_bytes bigint NOT NULL DEFAULT 0,
  used_inodes bigint NOT NULL DEFAULT 0,
  -- One writer per volume: the engine instance holding an unexpired lease serves all writes.
  owner text,
  owner_expires_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX volumes_team ON volumes (team_id);

CREATE TABLE volume_snapshots (
  id uuid PRIMARY KEY,
  volume_id uuid NOT NULL,
  team_id text NOT NULL,
  layer_id bigint NOT NULL REFERENCES layers (id),
  name text NOT NULL,
  description text NOT NULL DEFAULT '',
  size_bytes bigint NOT NULL,
  inodes bigint NOT NULL,
  next_ino bigint NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz
);
CREATE INDEX volume_snapshots_volume ON volume_snapshots (volume_id);

-- An inode version in a layer. `deleted` marks it gone in this layer and below.
CREATE TABLE inodes (
  layer_id bigint NOT NULL REFERENCES layers (id) ON DELETE CASCADE,
  ino bigint NOT NULL,
  deleted boolean NOT NULL DEFAULT false,
  mode integer NOT NULL DEFAULT 0,
  uid integer NOT NULL DEFAULT 0,
  gid integer NOT NULL DEFAULT 0,
  nlink integer NOT NULL DEFAULT 0,
  size bigint NOT NULL DEFAULT 0,
  rdev integer NOT NULL DEFAULT 0,
  -- Directories only: the parent directory (rename refuses to move a directory into itself).
  parent_ino bigint,
  atime_ns bigint NOT NULL DEFAULT 0,
  mtime_ns bigint NOT NULL DEFAULT 0,
  ctime_ns bigint NOT NULL DEFAULT 0,
  target bytea,
  xattrs bytea,
  extents bytea,
  PRIMARY KEY (layer_id, ino)
);

-- A directory entry in a layer; ino NULL is a whiteout hiding the name below.
CREATE TABLE dentries (
  layer_id bigint NOT NULL REFERENCES layers (id) ON DELETE CASCADE,
  parent_ino bigint NOT NULL,
  name bytea NOT NULL,
  ino bigint,
  -- File type (mode >> 12), so readdir needs no inode lookups.
  kind smallint NOT NULL DEFAULT 0,
  PRIMARY KEY (layer_id, parent_ino, name)
);
