-- SSH public keys (issue 15): a team's keys log in to the team's sandboxes through the server's
-- SSH endpoint. Only public keys are stored. A key is registered once per team (its SHA-256
-- fingerprint is unique there); `public_key` is the canonical `type base64` form.
CREATE TABLE ssh_keys (
  id text PRIMARY KEY,
  team_id text NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
  name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
  key_type text NOT NULL,
  public_key text NOT NULL,
  fingerprint_sha256 text NOT NULL,
  comment text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (team_id, fingerprint_sha256)
);
CREATE INDEX ssh_keys_team ON ssh_keys (team_id);
