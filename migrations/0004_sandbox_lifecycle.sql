-- Sandbox lifecycle II: warm pools, pause / resume, root-filesystem checkpoints, snapshots and forks.
--
-- A sandbox's writable root file system is kept in the volume engine as hidden volumes of kind
-- 'rootfs' (same team, same dedup, same copy-on-write layers as user volumes). Each checkpoint
-- and each rootfs snapshot is one such volume, written once and never again; forks, restores
-- and claims from a snapshot are volume forks (O(1)), and layer reference counting keeps shared
-- content alive for as long as anything reads it.
ALTER TABLE volumes ADD COLUMN kind text NOT NULL DEFAULT 'volume' CHECK (kind IN ('volume', 'rootfs'));
CREATE INDEX volumes_rootfs ON volumes (created_at) WHERE kind = 'rootfs';

ALTER TABLE sandboxes DROP CONSTRAINT sandboxes_status_check;
-- 'idle': started by a warm pool and not claimed yet (never shown by the API).
ALTER TABLE sandboxes ADD CONSTRAINT sandboxes_status_check
  CHECK (status IN ('idle', 'starting', 'running', 'paused', 'terminating', 'failed'));
-- The last committed checkpoint of the root file system (a rootfs volume); NULL: the template alone.
ALTER TABLE sandboxes ADD COLUMN rootfs_volume_id uuid;
-- A capture in progress or the running generation's capture target (a rootfs volume): recorded
-- before it is written, so a crash leaves nothing unfound.
ALTER TABLE sandboxes ADD COLUMN work_volume_id uuid;
-- Warm pools: '<template team>/<template id>' and a hash of the template spec the sandbox was
-- started from (a changed template never hands out a stale warm sandbox).
ALTER TABLE sandboxes ADD COLUMN pool_key text;
ALTER TABLE sandboxes ADD COLUMN pool_spec text;
ALTER TABLE sandboxes ADD COLUMN paused_at timestamptz;
CREATE INDEX sandboxes_pool ON sandboxes (pool_key, host, created_at) WHERE status = 'idle';

CREATE TABLE rootfs_snapshots (
  id text PRIMARY KEY,
  team_id text NOT NULL,
  -- The sandbox it was taken from (it may have been deleted since: snapshots outlive it).
  sandbox_id text NOT NULL,
  -- The rootfs volume holding the snapshot's content.
  volume_id uuid NOT NULL,
  name text NOT NULL DEFAULT '',
  description text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz
);
CREATE INDEX rootfs_snapshots_sandbox ON rootfs_snapshots (team_id, sandbox_id, created_at);
CREATE INDEX rootfs_snapshots_expiry ON rootfs_snapshots (expires_at) WHERE expires_at IS NOT NULL;
