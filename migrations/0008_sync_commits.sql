-- Workspace sync (issue 14): the answer of each commit by its idempotency key, so that a client
-- retrying a commit it saw no answer to (a dropped connection, a server restart) gets the first
-- answer instead of a second application. Written in the same transaction-free step after the
-- operations are durable; rows older than limits.syncIdempotencyTtlMs are removed by the server.
CREATE TABLE sync_commits (
  team_id text NOT NULL,
  volume_id text NOT NULL,
  idempotency_key text NOT NULL,
  answer jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (team_id, volume_id, idempotency_key)
);
CREATE INDEX sync_commits_created ON sync_commits (created_at);
