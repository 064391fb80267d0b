-- Templates built in the background (issue 15): from a registry image (a pull) or from a sandbox
-- (a capture of its root file system). A template's `creation` says how its build goes, as the
-- SDK polls it: NULL for a template usable at once (built-ins, s0/busybox, local archives), else
-- {"state": "creating" | "ready" | "failed", "stage", "startedAt", "completedAt"?, "reason"?,
-- "message"?, "digest"?}. `build_host` is the server running the build: at start a server takes
-- back its own builds still `creating` (a restart never leaves one creating forever).
ALTER TABLE sandbox_templates ADD COLUMN creation jsonb;
ALTER TABLE sandbox_templates ADD COLUMN build_host text;
-- A template made from a sandbox: the rootfs volume (kind rootfs, owned by the template alone) its
-- claims fork to seed their writable root file system; deleted with the template.
ALTER TABLE sandbox_templates ADD COLUMN base_volume_id uuid;
CREATE INDEX sandbox_templates_creating ON sandbox_templates (build_host)
  WHERE creation ->> 'state' = 'creating';

-- Credentials a team's templates pull private registry images with: one per registry host,
-- the password sealed with the server secret key (AES-256-GCM, the row's identity as associated
-- data), never returned by the API.
CREATE TABLE registry_credentials (
  team_id text NOT NULL REFERENCES teams (id),
  registry text NOT NULL,
  username text NOT NULL,
  key_id text NOT NULL,
  nonce bytea NOT NULL CHECK (octet_length(nonce) = 12),
  ciphertext bytea NOT NULL,
  tag bytea NOT NULL CHECK (octet_length(tag) = 16),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (team_id, registry)
);

-- POST /templates/from-sandbox answers by Idempotency-Key: the same key and body get the same
-- template, the same key with another body a 409.
CREATE TABLE template_idempotency (
  team_id text NOT NULL,
  idempotency_key text NOT NULL,
  body_sha256 text NOT NULL,
  template_id text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (team_id, idempotency_key)
);
