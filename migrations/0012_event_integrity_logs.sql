-- Signed events and sandbox output logs (issue 16).
-- Every event is signed when written (ed25519-sha256-v1 over its wire document, FORMAT.md); rows
-- written before this migration have no integrity and read as `unavailable`. The region and
-- cluster are part of the signed document, so they are stored with each event.
ALTER TABLE sandbox_events
  ADD COLUMN region_id text NOT NULL DEFAULT 'local',
  ADD COLUMN cluster_id text NOT NULL DEFAULT 'local',
  ADD COLUMN integrity jsonb;
-- Retention by age scans occurred_at, which grows with seq: a BRIN index answers that range at a
-- tiny fraction of a b-tree's cost per insert (every event pays it; retention runs every 10 min).
DROP INDEX sandbox_events_time;
CREATE INDEX sandbox_events_time ON sandbox_events USING brin (occurred_at);

-- What every context printed (stdout, stderr, a pty's output), one row per chunk as it was read,
-- bounded per sandbox by bytes (the oldest go first; a `logs.truncated` event reports each drop).
-- Kept after the sandbox is deleted until retention removes them, like events: no foreign key.
CREATE TABLE sandbox_logs (
  -- The cursor: batches commit in seq order (one advisory lock per batch, like events).
  seq bigserial PRIMARY KEY,
  team_id text NOT NULL,
  sandbox_id text NOT NULL,
  context_id text,
  process_id text,
  stream text NOT NULL CHECK (stream IN ('stdout', 'stderr', 'pty')),
  occurred_at timestamptz NOT NULL,
  ingested_at timestamptz NOT NULL DEFAULT now(),
  message text NOT NULL,
  attributes jsonb
);
CREATE INDEX sandbox_logs_sandbox ON sandbox_logs (team_id, sandbox_id, seq);
CREATE INDEX sandbox_logs_time ON sandbox_logs USING brin (occurred_at);
