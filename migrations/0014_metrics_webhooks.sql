-- Sandbox runtime metrics and webhooks (issue 16 §2, §3).
--
-- Metrics: one row per sample of one sandbox (every S0_METRICS_INTERVAL_MS), every measured
-- value a column. A wide row rather than one row per metric: the sampler writes one row per
-- sandbox per tick (14 values for the price of one index entry), and a query reads one index
-- range and aggregates every metric it asked for in one pass. Derived metrics (cpu cores and
-- utilization, memory available and utilization, rates) are computed at query time. NULL: not
-- measured (a sandbox without a network has no veth counters). No foreign key: samples of a
-- deleted sandbox stay until retention removes them.
CREATE TABLE sandbox_metric_samples (
  sandbox_id text NOT NULL,
  team_id text NOT NULL,
  time timestamptz NOT NULL,
  -- When the sandbox's runtime (its cgroup) started: counters restart at 0 with each start, so
  -- a change of this value is a series reset (a new segment on the wire).
  started_at timestamptz NOT NULL,
  cpu_usage_usec bigint,
  cpu_limit_cores double precision,
  memory_usage_bytes bigint,
  memory_working_set_bytes bigint,
  memory_limit_bytes bigint,
  pids bigint,
  net_rx_bytes bigint,
  net_tx_bytes bigint,
  net_rx_errors bigint,
  net_tx_errors bigint,
  rootfs_bytes bigint,
  rootfs_inodes bigint,
  PRIMARY KEY (sandbox_id, time)
);
-- Retention deletes by age: a BRIN index (rows arrive in time order) costs almost nothing to keep.
CREATE INDEX sandbox_metric_samples_time ON sandbox_metric_samples USING brin (time);

-- Webhooks: one row per sandbox claimed with config.webhook. The events themselves are in
-- sandbox_events (the source of truth); this row is the delivery cursor over them (the last
-- event delivered or given up on) with the state of the attempt in progress. The url and secret
-- are copied here so that events after the sandbox row is gone (sandbox.delete) still go out.
CREATE TABLE sandbox_webhooks (
  sandbox_id text PRIMARY KEY,
  team_id text NOT NULL,
  -- The server that delivers (the sandbox's host): one deliverer per sandbox keeps the order.
  host text NOT NULL,
  url text NOT NULL,
  secret text NOT NULL DEFAULT '',
  watch_dir text,
  -- sandbox_events.seq of the last event delivered or dropped (0: none yet).
  cursor_seq bigint NOT NULL DEFAULT 0,
  -- The head event's failed attempts so far, and when the next one may run.
  attempts integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  last_error text,
  delivered bigint NOT NULL DEFAULT 0,
  dropped bigint NOT NULL DEFAULT 0,
  -- Set when the sandbox is gone: the row goes once its last events are out.
  sandbox_gone_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sandbox_webhooks_due ON sandbox_webhooks (host, next_attempt_at);
-- The deliverer finds claims with a webhook it has no row for yet (a crash between the claim and
-- its subscription): only those rows are indexed.
CREATE INDEX sandboxes_webhook ON sandboxes (host) WHERE config ? 'webhook';
