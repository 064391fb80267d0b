-- SSH in a cluster (issue 17, docs/DEPLOY.md "SSH"): API replicas terminate users' SSH and relay
-- each session to the owning agent's private SSH endpoint.
--
-- nodes.ssh_port: the port of the agent's private SSH endpoint, on the host of its advertise URL
-- (NULL: the agent runs none). Set by the agent once that endpoint listens.
ALTER TABLE nodes ADD COLUMN ssh_port integer CHECK (ssh_port BETWEEN 1 AND 65535);

-- Secrets every process of the cluster shares, sealed with S0_SECRET_KEY (AES-256-GCM, the name
-- as associated data): the SSH host key, which every replica presents to clients and every agent
-- to the replicas. The first process to start writes it.
CREATE TABLE cluster_secrets (
  name text PRIMARY KEY,
  key_id text NOT NULL,
  nonce bytea NOT NULL,
  ciphertext bytea NOT NULL,
  tag bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
