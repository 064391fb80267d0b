-- Credential sources (issue 12): team-scoped secrets the egress proxy injects outside sandboxes.
--
-- `credential_sources` holds what may be shown (name, kind, version, times); every write of a
-- source's secret spec is a new row of `credential_source_versions`, sealed with AES-256-GCM
-- under the server secret key (secret.key or S0_SECRET_KEY, never in the database). The
-- associated data of each seal is the row's identity (team, name, version, resolver kind), so a
-- sealed value copied onto another row, team or version fails to open. `key_id` names the key
-- that sealed it (a hash, not the key), so a server started with another key says so plainly.
CREATE TABLE credential_sources (
  team_id text NOT NULL REFERENCES teams (id),
  name text NOT NULL CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
  resolver_kind text NOT NULL CHECK (resolver_kind IN ('static_headers',
    'static_tls_client_certificate', 'static_username_password', 'static_ssh_private_key')),
  current_version integer NOT NULL CHECK (current_version >= 1),
  status text NOT NULL DEFAULT 'active' CHECK (status IN ('active')),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (team_id, name)
);

CREATE TABLE credential_source_versions (
  team_id text NOT NULL,
  name text NOT NULL,
  version integer NOT NULL CHECK (version >= 1),
  key_id text NOT NULL,
  nonce bytea NOT NULL CHECK (octet_length(nonce) = 12),
  ciphertext bytea NOT NULL,
  tag bytea NOT NULL CHECK (octet_length(tag) = 16),
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (team_id, name, version),
  -- Deleting a source destroys its sealed versions with it.
  FOREIGN KEY (team_id, name) REFERENCES credential_sources (team_id, name) ON DELETE CASCADE
);
