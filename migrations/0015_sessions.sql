-- Execution sessions (issue 16 §5, api-contract §12): supervised, journaled processes of a
-- sandbox. The session (its spec, phase, current attempt) and its journal live here, not in the
-- server's memory: a restarted server finds them, and recovers them by their runtime_recovery
-- policy when the sandbox runs again. A session goes with its sandbox (ON DELETE CASCADE).
CREATE TABLE execution_sessions (
  id text PRIMARY KEY,
  sandbox_id text NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
  team_id text NOT NULL,
  spec jsonb NOT NULL,
  spec_version integer NOT NULL DEFAULT 1,
  -- The create request's Idempotency-Key and a hash of its spec (a replay with another spec is 409).
  idempotency_key text,
  idempotency_hash text,
  phase text NOT NULL,
  runtime_generation integer NOT NULL,
  -- The current (or last) attempt: {id, number, runtime_generation, pid?, started_at?, finished_at?, exit_code?, reason?}.
  attempt jsonb,
  attempts integer NOT NULL DEFAULT 0,
  restart_count integer NOT NULL DEFAULT 0,
  -- The journal's cursor: the last seq handed out and the oldest seq retention kept.
  last_seq bigint NOT NULL DEFAULT 0,
  earliest_seq bigint NOT NULL DEFAULT 1,
  -- What the kept events weigh (payload + a fixed overhead each), against spec.event_retention.max_bytes.
  retained_bytes bigint NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  last_activity_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (sandbox_id, idempotency_key)
);
CREATE INDEX execution_sessions_sandbox ON execution_sessions (sandbox_id, created_at);

-- The journal: one row per event, seq dense per session (1, 2, ...) until retention drops the oldest.
CREATE TABLE execution_session_events (
  session_id text NOT NULL REFERENCES execution_sessions(id) ON DELETE CASCADE,
  seq bigint NOT NULL,
  runtime_generation integer NOT NULL,
  attempt_id text,
  type text NOT NULL,
  stream text,
  data bytea,
  exit_code integer,
  reason text,
  occurred_at timestamptz NOT NULL,
  PRIMARY KEY (session_id, seq)
);

-- Inputs already applied, by the client's input_id: a retried input is answered, not written twice.
CREATE TABLE execution_session_inputs (
  session_id text NOT NULL REFERENCES execution_sessions(id) ON DELETE CASCADE,
  input_id text NOT NULL,
  attempt_id text NOT NULL,
  accepted boolean NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (session_id, input_id)
);
