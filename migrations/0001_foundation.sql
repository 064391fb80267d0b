-- Teams and API keys (only hashes of keys are stored).
CREATE TABLE teams (
  id text PRIMARY KEY,
  name text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
  id text PRIMARY KEY,
  team_id text NOT NULL REFERENCES teams (id),
  name text NOT NULL,
  role text NOT NULL DEFAULT 'admin' CHECK (role IN ('admin', 'member')),
  key_hash bytea NOT NULL UNIQUE,
  key_prefix text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  last_used_at timestamptz,
  revoked_at timestamptz
);
CREATE INDEX api_keys_team ON api_keys (team_id);

-- Pack objects in the object store. A row exists only after its object is durable (rule 1).
CREATE TABLE packs (
  id text PRIMARY KEY,
  team_id text NOT NULL,
  object_key text NOT NULL UNIQUE,
  size_bytes bigint NOT NULL CHECK (size_bytes > 0),
  chunk_count integer NOT NULL CHECK (chunk_count >= 0),
  live_bytes bigint NOT NULL CHECK (live_bytes >= 0),
  state text NOT NULL DEFAULT 'live' CHECK (state IN ('live', 'deleting')),
  delete_after timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX packs_team ON packs (team_id);
CREATE INDEX packs_deleting ON packs (delete_after) WHERE state = 'deleting';

-- The chunk index: (team, BLAKE3-256) -> where the chunk lives. Dedup scope is the team.
CREATE TABLE chunks (
  team_id text NOT NULL,
  hash bytea NOT NULL CHECK (length(hash) = 32),
  pack_id text NOT NULL REFERENCES packs (id),
  offset_bytes bigint NOT NULL CHECK (offset_bytes >= 0),
  stored_bytes integer NOT NULL CHECK (stored_bytes > 0),
  raw_bytes integer NOT NULL CHECK (raw_bytes > 0),
  codec smallint NOT NULL DEFAULT 0,
  touched_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (team_id, hash)
);
CREATE INDEX chunks_pack ON chunks (pack_id);

-- Explicit GC roots: a named set of chunks that must stay reachable (in-flight writes, pins).
-- Higher layers add root sources of their own (volume heads, snapshots) in code.
CREATE TABLE gc_roots (
  id text PRIMARY KEY,
  team_id text NOT NULL,
  kind text NOT NULL,
  label text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz
);
CREATE TABLE gc_root_chunks (
  root_id text NOT NULL REFERENCES gc_roots (id) ON DELETE CASCADE,
  hash bytea NOT NULL,
  PRIMARY KEY (root_id, hash)
);
