/**
 * Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
 * Append only: a released migration is never edited.
 */
export const migrations: readonly string[] = [
  `
  CREATE TABLE base_versions (
    name           TEXT PRIMARY KEY,
    alias          TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('build', 'install', 'save', 'import')),
    builder        TEXT,
    parent_alias   TEXT,
    parent_version TEXT,
    script         TEXT,
    script_sha256  TEXT,
    config         TEXT,
    size_bytes     INTEGER,
    created_at     TEXT NOT NULL,
    seq            INTEGER NOT NULL
  );
  CREATE INDEX base_versions_alias ON base_versions (alias, seq);
  CREATE TABLE base_aliases (
    name       TEXT PRIMARY KEY,
    version    TEXT NOT NULL REFERENCES base_versions (name),
    updated_at TEXT NOT NULL
  );
  CREATE TABLE boxes (
    id          TEXT PRIMARY KEY,
    project     TEXT NOT NULL,
    name        TEXT NOT NULL,
    base        TEXT NOT NULL,
    tags        TEXT NOT NULL DEFAULT '{}',
    environment TEXT NOT NULL DEFAULT '{}',
    data_mounts TEXT NOT NULL DEFAULT '[]',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    UNIQUE (project, name)
  );
  CREATE TABLE checkpoints (
    box_id      TEXT NOT NULL REFERENCES boxes (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    size_bytes  INTEGER,
    created_at  TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    PRIMARY KEY (box_id, name)
  );
  -- Subvolumes being put into place by a live process, not yet committed as rows; the
  -- reconciler leaves these alone while their process lives.
  CREATE TABLE pending_paths (
    path       TEXT PRIMARY KEY,
    pid        INTEGER NOT NULL,
    started_at TEXT NOT NULL
  );
  `,
  // 2: the box's security profile and limits (privileged, cpus, memory, pids, publish), as JSON.
  `
  ALTER TABLE boxes ADD COLUMN config TEXT NOT NULL DEFAULT '{}';
  `,
  // 3: data volumes (SPEC §7): the volumes, their snapshots, and the parent each backup
  // target's next incremental backup is sent against.
  `
  CREATE TABLE volumes (
    id           TEXT PRIMARY KEY,
    project      TEXT NOT NULL,
    name         TEXT NOT NULL,
    ownership    TEXT NOT NULL CHECK (ownership IN ('persistent', 'box_owned')),
    owner_box_id TEXT,
    source       TEXT,
    size_bytes   INTEGER,
    sized_at     TEXT,
    created_at   TEXT NOT NULL,
    UNIQUE (project, name)
  );
  CREATE INDEX volumes_owner ON volumes (owner_box_id);
  CREATE TABLE volume_snapshots (
    volume_id   TEXT NOT NULL REFERENCES volumes (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    size_bytes  INTEGER,
    created_at  TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    PRIMARY KEY (volume_id, name)
  );
  CREATE TABLE volume_backup_parents (
    volume_id  TEXT NOT NULL REFERENCES volumes (id) ON DELETE CASCADE,
    target     TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (volume_id, target)
  );
  `,
  // 4: pending_paths (migration 1) was never used: staged subvolumes are found by their
  // names under staging/ and the pid in them (storage/layout.ts), not by rows.
  `
  DROP TABLE IF EXISTS pending_paths;
  `,
];
