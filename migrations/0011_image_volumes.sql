-- Registry images in the chunk engine (issue 15, 3b): the unpacked root file system of an image
-- (by manifest digest) is imported into a rootfs volume of the system owner (team 's0-images',
-- no account's team: accounts are team-<hex>), so images sharing layer content store it once
-- (chunks are content-addressed per team, and every image is under that one team), and a host
-- lacking `<images dir>/rootfs/<digest>` materializes it from the chunk store instead of pulling
-- from the registry. Images are public content named by digest: no team of a template owns the
-- volume. A row is kept while a template or a sandbox names its digest; the orphan sweep drops
-- it after that (and then the volume).
CREATE TABLE image_volumes (
  digest text PRIMARY KEY CHECK (digest ~ '^sha256:[a-f0-9]{64}$'),
  volume_id uuid NOT NULL UNIQUE,
  -- What the import wrote (for logs and `s0` operators): file bytes and entries.
  bytes bigint NOT NULL DEFAULT 0,
  entries bigint NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now()
);
