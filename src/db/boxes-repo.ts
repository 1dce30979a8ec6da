/**
 * Boxes (BoxesRepo) and their snapshots (SnapshotsRepo, the `checkpoints` table) ↔ core types.
 * A UNIQUE violation becomes a ConflictError here (ZOMG_BOX_EXISTS, ZOMG_SNAPSHOT_EXISTS).
 */
import { ConflictError } from '../core/errors.js';
import { boxConfigFromJson } from '../core/limits.js';
import type { Box } from '../core/types.js';
import type { Db } from './database.js';
import { insertOrConflict } from './unique.js';

/** A box as stored: everything but its status, which is checked live. */
export type BoxRow = Omit<Box, 'status'>;

/** The row as SQLite returns it: the maps are JSON text. */
type RawBox = Omit<BoxRow, 'tags' | 'environment' | 'data_mounts' | 'config'> & { tags: string; environment: string; data_mounts: string; config: string };

const toBox = (r: RawBox): BoxRow => ({
  ...r,
  tags: JSON.parse(r.tags) as BoxRow['tags'],
  environment: JSON.parse(r.environment) as BoxRow['environment'],
  data_mounts: dataMountsOf(r.data_mounts),
  config: boxConfigFromJson(r.config),
});

/**
 * The stored data mounts: `[{name, path, read_only}]`, and rows written before that shape
 * (`[{volume, path, mode}]`) read the same way.
 */
function dataMountsOf(text: string): BoxRow['data_mounts'] {
  const raw = JSON.parse(text) as Array<{ name?: string; volume?: string; path: string; read_only?: boolean; mode?: string }>;
  return raw.map((m) => ({ name: m.name ?? m.volume ?? '', path: m.path, read_only: m.read_only ?? m.mode === 'ro' }));
}

export interface SnapshotRow {
  box_id: string;
  name: string;
  description: string;
  size_bytes: number | null;
  created_at: string;
}

export class BoxesRepo {
  constructor(private readonly db: Db) {}

  get(project: string, name: string): BoxRow | undefined {
    const row = this.db.prepare('SELECT * FROM boxes WHERE project = ? AND name = ?').get(project, name) as RawBox | undefined;
    return row && toBox(row);
  }

  byId(id: string): BoxRow | undefined {
    const row = this.db.prepare('SELECT * FROM boxes WHERE id = ?').get(id) as RawBox | undefined;
    return row && toBox(row);
  }

  list(project?: string): BoxRow[] {
    const rows =
      project === undefined
        ? (this.db.prepare('SELECT * FROM boxes ORDER BY project, name').all() as RawBox[])
        : (this.db.prepare('SELECT * FROM boxes WHERE project = ? ORDER BY name').all(project) as RawBox[]);
    return rows.map(toBox);
  }

  insert(box: BoxRow): void {
    insertOrConflict(() => this.db
      .prepare(
        'INSERT INTO boxes (id, project, name, base, tags, environment, data_mounts, config, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      )
      .run(
        box.id,
        box.project,
        box.name,
        box.base,
        JSON.stringify(box.tags),
        JSON.stringify(box.environment),
        JSON.stringify(box.data_mounts),
        JSON.stringify(box.config),
        box.created_at,
        box.updated_at,
      ), () => new ConflictError('ZOMG_BOX_EXISTS', `box "${box.project}:${box.name}" already exists`, { hint: 'pick another name, or delete the existing box' }));
  }

  update(id: string, fields: { tags?: Record<string, string>; environment?: Record<string, string>; updatedAt: string }): void {
    const box = this.byId(id);
    if (!box) return;
    this.db
      .prepare('UPDATE boxes SET tags = ?, environment = ?, updated_at = ? WHERE id = ?')
      .run(JSON.stringify(fields.tags ?? box.tags), JSON.stringify(fields.environment ?? box.environment), fields.updatedAt, id);
  }

  delete(id: string): void {
    this.db.prepare('DELETE FROM boxes WHERE id = ?').run(id);
  }

  /** Replaces the box's data mounts (attach, detach). */
  setDataMounts(id: string, mounts: BoxRow['data_mounts'], updatedAt: string): void {
    this.db.prepare('UPDATE boxes SET data_mounts = ?, updated_at = ? WHERE id = ?').run(JSON.stringify(mounts), updatedAt, id);
  }

  ids(): string[] {
    return (this.db.prepare('SELECT id FROM boxes').all() as Array<{ id: string }>).map((r) => r.id);
  }

  /** Boxes cloned from `version`. */
  countUsingBase(version: string): number {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM boxes WHERE base = ?').get(version) as { n: number }).n;
  }
}

export class SnapshotsRepo {
  constructor(private readonly db: Db) {}

  list(boxId: string): SnapshotRow[] {
    return this.db
      .prepare('SELECT box_id, name, description, size_bytes, created_at FROM checkpoints WHERE box_id = ? ORDER BY seq')
      .all(boxId) as SnapshotRow[];
  }

  get(boxId: string, name: string): SnapshotRow | undefined {
    return this.db
      .prepare('SELECT box_id, name, description, size_bytes, created_at FROM checkpoints WHERE box_id = ? AND name = ?')
      .get(boxId, name) as SnapshotRow | undefined;
  }

  insert(row: SnapshotRow): void {
    const seq = (this.db.prepare('SELECT COALESCE(MAX(seq), 0) + 1 AS n FROM checkpoints WHERE box_id = ?').get(row.box_id) as { n: number }).n;
    insertOrConflict(
      () => this.db
        .prepare('INSERT INTO checkpoints (box_id, name, description, size_bytes, created_at, seq) VALUES (?, ?, ?, ?, ?, ?)')
        .run(row.box_id, row.name, row.description, row.size_bytes, row.created_at, seq),
      () => new ConflictError('ZOMG_SNAPSHOT_EXISTS', `snapshot "${row.name}" already exists`, { hint: 'pick another name, or omit it to get the next vN' }),
    );
  }

  delete(boxId: string, name: string): void {
    this.db.prepare('DELETE FROM checkpoints WHERE box_id = ? AND name = ?').run(boxId, name);
  }

  setSize(boxId: string, name: string, sizeBytes: number): void {
    this.db.prepare('UPDATE checkpoints SET size_bytes = ? WHERE box_id = ? AND name = ?').run(sizeBytes, boxId, name);
  }

  withoutSize(): Array<{ box_id: string; name: string }> {
    return this.db.prepare('SELECT box_id, name FROM checkpoints WHERE size_bytes IS NULL').all() as Array<{ box_id: string; name: string }>;
  }

  all(): Array<{ box_id: string; name: string }> {
    return this.db.prepare('SELECT box_id, name FROM checkpoints').all() as Array<{ box_id: string; name: string }>;
  }
}
