-- Scale-out (issue 17): API replicas and one agent per host over this database.
--
-- nodes: the agents. An agent registers at start (epoch + 1) and heartbeats; a node whose
-- heartbeat is older than S0_NODE_DEAD_AFTER_S is declared dead by whichever process looks
-- first (cluster/reaper). An agent whose heartbeat finds its row dead or its epoch moved on is
-- fenced: it stops its sandboxes and exits, and its next start adopts nothing.
CREATE TABLE nodes (
  id text PRIMARY KEY,
  name text NOT NULL UNIQUE,
  advertise_url text NOT NULL,
  state text NOT NULL CHECK (state IN ('live', 'dead', 'draining')),
  epoch bigint NOT NULL DEFAULT 1,
  -- Capacity: sandboxes, CPU (millicores) and memory (bytes) it accepts; 0 = unbounded.
  max_sandboxes integer NOT NULL DEFAULT 0,
  cpu_millis bigint NOT NULL DEFAULT 0,
  memory_bytes bigint NOT NULL DEFAULT 0,
  labels jsonb NOT NULL DEFAULT '{}',
  started_at timestamptz NOT NULL DEFAULT now(),
  heartbeat_at timestamptz NOT NULL DEFAULT now(),
  dead_at timestamptz
);

-- Placement leases: what an API replica promised a node between choosing it and the sandbox
-- row existing there. They count towards the node's load until the claim ends (the agent
-- deletes it) or they expire (a claim that never arrived).
CREATE TABLE node_reservations (
  id text PRIMARY KEY,
  node_id text NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
  cpu_millis bigint NOT NULL DEFAULT 0,
  memory_bytes bigint NOT NULL DEFAULT 0,
  expires_at timestamptz NOT NULL
);
CREATE INDEX node_reservations_node ON node_reservations (node_id, expires_at);

-- Fencing of volume writers: the epoch moves on every time the writer lease changes hands, and
-- every commit of a volume's head compares it with the epoch its writer took the lease under.
ALTER TABLE volumes ADD COLUMN writer_epoch bigint NOT NULL DEFAULT 0;
