-- Sandbox events: one append-only log of what happened to and in a sandbox (Sandbox0's event
-- model, schema version 2): network_audit decisions of the egress proxy now; lifecycle, API
-- access, processes and files later (issue 16 serves and signs them). Events of a deleted sandbox
-- stay until retention removes them, so there is no foreign key.
CREATE TABLE sandbox_events (
  -- The cursor: strictly increasing in commit order within one writer, gaps allowed.
  seq bigserial PRIMARY KEY,
  event_id text NOT NULL UNIQUE,
  team_id text NOT NULL,
  sandbox_id text NOT NULL,
  occurred_at timestamptz NOT NULL,
  ingested_at timestamptz NOT NULL DEFAULT now(),
  source text NOT NULL,
  event_type text NOT NULL,
  phase text NOT NULL,
  outcome text NOT NULL,
  actor jsonb NOT NULL,
  action text NOT NULL,
  resource jsonb NOT NULL,
  operation_id text NOT NULL,
  parent_event_id text,
  producer jsonb NOT NULL,
  request jsonb,
  attributes jsonb
);
CREATE INDEX sandbox_events_sandbox ON sandbox_events (team_id, sandbox_id, seq);
CREATE INDEX sandbox_events_time ON sandbox_events (occurred_at);

-- A sandbox's CA for TLS interception (terminate-reoriginate): the certificate is bound into the
-- sandbox; the private key never leaves the host and is kept encrypted with the server's key.
CREATE TABLE sandbox_cas (
  sandbox_id text PRIMARY KEY,
  team_id text NOT NULL,
  cert_pem text NOT NULL,
  -- The key, AES-256-GCM under the server's secret key (key_id names which), bound to the sandbox id.
  key_id text NOT NULL,
  key_nonce bytea NOT NULL,
  key_ciphertext bytea NOT NULL,
  key_tag bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
