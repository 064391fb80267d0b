-- Accounts, quotas and usage (issue 16 §4). Teams get a slug, a parent (the team whose admin
-- created them: its admins manage this team) and an update time; API keys get an optional expiry,
-- who created them and an update time. Quotas are per team and dimension; an absent row is the
-- default (unlimited, or the server's built-in bound). Rate quotas count in fixed windows
-- (quota_counters); claims hold a slot while they are admitted (quota_claim_slots) so two
-- concurrent claims at the limit cannot both pass. Usage is sampled into hourly windows.
ALTER TABLE teams ADD COLUMN slug text;
ALTER TABLE teams ADD COLUMN parent_team_id text REFERENCES teams (id);
ALTER TABLE teams ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
CREATE UNIQUE INDEX teams_slug ON teams (slug) WHERE slug IS NOT NULL;
CREATE INDEX teams_parent ON teams (parent_team_id) WHERE parent_team_id IS NOT NULL;

ALTER TABLE api_keys ADD COLUMN created_by text NOT NULL DEFAULT 'system';
ALTER TABLE api_keys ADD COLUMN expires_at timestamptz;
ALTER TABLE api_keys ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

CREATE TABLE team_quotas (
  team_id text NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
  dimension text NOT NULL CHECK (dimension IN ('active_sandboxes', 'sandbox_claims', 'volume_storage_gb',
    'snapshot_storage_gb', 'api_requests', 'network_egress_bytes', 'network_ingress_bytes')),
  limit_value double precision NOT NULL CHECK (limit_value >= 0),
  -- Rate dimensions: the window length; capacity dimensions: NULL.
  interval_ms bigint CHECK (interval_ms > 0),
  burst_value double precision CHECK (burst_value >= 0),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (team_id, dimension)
);

-- Counts of rate dimensions per fixed window (window_start = epoch multiple of the interval).
CREATE TABLE quota_counters (
  team_id text NOT NULL,
  dimension text NOT NULL,
  window_start timestamptz NOT NULL,
  value bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (team_id, dimension, window_start)
);

-- A claim (or fork) being admitted: counted as an active sandbox until it has its row. A crashed
-- server's slots stop counting at expires_at.
CREATE TABLE quota_claim_slots (
  id text PRIMARY KEY,
  team_id text NOT NULL,
  expires_at timestamptz NOT NULL
);
CREATE INDEX quota_claim_slots_team ON quota_claim_slots (team_id, expires_at);

-- Hourly usage per team (sandbox seconds weighted by size, storage GiB-hours, network bytes).
CREATE TABLE usage_windows (
  id bigserial PRIMARY KEY,
  team_id text NOT NULL,
  window_type text NOT NULL,
  window_start timestamptz NOT NULL,
  window_end timestamptz NOT NULL,
  value double precision NOT NULL DEFAULT 0,
  unit text NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (team_id, window_type, window_start)
);
CREATE INDEX usage_windows_team ON usage_windows (team_id, id);

-- The usage sampler's progress (one row): when it last billed, and the last event it summed.
CREATE TABLE usage_sampler_state (
  id integer PRIMARY KEY CHECK (id = 1),
  sampled_at timestamptz NOT NULL,
  event_seq bigint NOT NULL DEFAULT 0
);
