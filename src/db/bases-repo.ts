/** Rows of base_versions and base_aliases ↔ core types. */
import type { BaseConfig, BaseKind, BaseVersion } from '../core/types.js';
import { ConflictError } from '../core/errors.js';
import type { Db } from './database.js';
import { insertOrConflict } from './unique.js';

interface VersionRow {
  name: string;
  alias: string;
  kind: BaseKind;
  builder: string | null;
  parent_alias: string | null;
  parent_version: string | null;
  script: string | null;
  script_sha256: string | null;
  config: string | null;
  size_bytes: number | null;
  created_at: string;
}

export interface NewVersion {
  name: string;
  alias: string;
  kind: BaseKind;
  builder?: string | null;
  parentAlias?: string | null;
  parentVersion?: string | null;
  script?: string | null;
  scriptSha256?: string | null;
  config?: BaseConfig | null;
  createdAt: string;
}

const toVersion = (r: VersionRow): BaseVersion => ({
  name: r.name,
  alias: r.alias,
  created_at: r.created_at,
  size_bytes: r.size_bytes,
  provenance: {
    kind: r.kind,
    build: {
      builder: r.builder,
      parent_alias: r.parent_alias,
      parent_version: r.parent_version,
      script: r.script,
      script_sha256: r.script_sha256,
    },
  },
  config: r.config === null ? null : (JSON.parse(r.config) as BaseConfig),
});

export class BasesRepo {
  constructor(private readonly db: Db) {}

  getVersion(name: string): BaseVersion | undefined {
    const row = this.db.prepare('SELECT * FROM base_versions WHERE name = ?').get(name) as VersionRow | undefined;
    return row && toVersion(row);
  }

  versionExists(name: string): boolean {
    return this.db.prepare('SELECT 1 FROM base_versions WHERE name = ?').get(name) !== undefined;
  }

  /** Versions written under `alias`, oldest first. */
  versionsOf(alias: string): BaseVersion[] {
    return (this.db.prepare('SELECT * FROM base_versions WHERE alias = ? ORDER BY seq').all(alias) as VersionRow[]).map(toVersion);
  }

  allVersions(): BaseVersion[] {
    return (this.db.prepare('SELECT * FROM base_versions ORDER BY seq').all() as VersionRow[]).map(toVersion);
  }

  /** The newest version of `alias` whose script tag starts with `prefix`. */
  newestWithTag(alias: string, prefix: string): BaseVersion | undefined {
    const row = this.db
      .prepare("SELECT * FROM base_versions WHERE alias = ? AND script_sha256 LIKE ? || '%' ORDER BY seq DESC LIMIT 1")
      .get(alias, prefix) as VersionRow | undefined;
    return row && toVersion(row);
  }

  insertVersion(v: NewVersion): void {
    const seq = (this.db.prepare('SELECT COALESCE(MAX(seq), 0) + 1 AS n FROM base_versions').get() as { n: number }).n;
    insertOrConflict(() => this.db
      .prepare(
        `INSERT INTO base_versions (name, alias, kind, builder, parent_alias, parent_version, script, script_sha256, config, size_bytes, created_at, seq)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)`,
      )
      .run(
        v.name,
        v.alias,
        v.kind,
        v.builder ?? null,
        v.parentAlias ?? null,
        v.parentVersion ?? null,
        v.script ?? null,
        v.scriptSha256 ?? null,
        v.config ? JSON.stringify(v.config) : null,
        v.createdAt,
        seq,
      ), () => new ConflictError('ZOMG_VERSION_EXISTS', `base version "${v.name}" already exists`, { hint: 'versions are written at most once a second per base: try again' }));
  }

  deleteVersion(name: string): void {
    this.db.prepare('DELETE FROM base_versions WHERE name = ?').run(name);
  }

  setVersionSize(name: string, sizeBytes: number): void {
    this.db.prepare('UPDATE base_versions SET size_bytes = ? WHERE name = ?').run(sizeBytes, name);
  }

  versionsWithoutSize(): string[] {
    return (this.db.prepare('SELECT name FROM base_versions WHERE size_bytes IS NULL').all() as Array<{ name: string }>).map((r) => r.name);
  }

  aliasTarget(alias: string): string | undefined {
    return (this.db.prepare('SELECT version FROM base_aliases WHERE name = ?').get(alias) as { version: string } | undefined)?.version;
  }

  setAlias(alias: string, version: string, at: string): void {
    this.db
      .prepare('INSERT INTO base_aliases (name, version, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at')
      .run(alias, version, at);
  }

  deleteAlias(alias: string): boolean {
    return this.db.prepare('DELETE FROM base_aliases WHERE name = ?').run(alias).changes > 0;
  }

  /** Aliases pointing at `version`. */
  aliasesOf(version: string): string[] {
    return (this.db.prepare('SELECT name FROM base_aliases WHERE version = ? ORDER BY name').all(version) as Array<{ name: string }>).map((r) => r.name);
  }

  aliases(): Array<{ name: string; version: string }> {
    return this.db.prepare('SELECT name, version FROM base_aliases ORDER BY name').all() as Array<{ name: string; version: string }>;
  }
}
