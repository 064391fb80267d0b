-- Sandboxes: templates (built-in ones are public, team_id = ''), claimed sandboxes and their
-- lifecycle. Contexts (REPL/cmd processes) live in memory only: they end with the server.
CREATE TABLE sandbox_templates (
  -- '' for public (built-in) templates, else the owning team.
  team_id text NOT NULL DEFAULT '',
  id text NOT NULL,
  -- The Sandbox0 wire spec (camelCase): mainContainer, volumeMounts, network, pool, envVars...
  spec jsonb NOT NULL,
  -- How the root file system is made: {"kind": "busybox" | "debian" | "image", "source"?: "..."}.
  rootfs jsonb NOT NULL,
  -- runc | crun | runsc; NULL: the server's default driver.
  driver text CHECK (driver IN ('runc', 'crun', 'runsc')),
  builtin boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (team_id, id)
);
CREATE INDEX sandbox_templates_id ON sandbox_templates (id);

CREATE TABLE sandboxes (
  id text PRIMARY KEY,
  team_id text NOT NULL,
  template_id text NOT NULL,
  status text NOT NULL CHECK (status IN ('starting', 'running', 'paused', 'terminating', 'failed')),
  -- Why the sandbox is failed or stopped (ttl expiry, lost at restart, start error), in plain words.
  status_reason text NOT NULL DEFAULT '',
  -- The claim's config (snake_case wire shape: env_vars, resources, ttl, hard_ttl, network...).
  config jsonb NOT NULL,
  driver text NOT NULL,
  runtime_generation integer NOT NULL DEFAULT 1,
  -- The server (host + state dir) that runs it: reconcile only touches its own sandboxes.
  host text NOT NULL,
  claimed_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz,
  hard_expires_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sandboxes_team ON sandboxes (team_id, created_at);
CREATE INDEX sandboxes_expiry ON sandboxes (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX sandboxes_hard_expiry ON sandboxes (hard_expires_at) WHERE hard_expires_at IS NOT NULL;
