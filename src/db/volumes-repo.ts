/** Rows of data volumes, their snapshots and their backup parents. */
import type { VolumeOwnership } from '../core/types.js';
import type { Db } from './database.js';

export interface VolumeRow {
  id: string;
  project: string;
  name: string;
  ownership: VolumeOwnership;
  owner_box_id: string | null;
  source: string | null;
  size_bytes: number | null;
  sized_at: string | null;
  created_at: string;
}

export interface VolumeSnapshotRow {
  volume_id: string;
  name: string;
  description: string;
  size_bytes: number | null;
  created_at: string;
}

export interface BackupParentRow {
  volume_id: string;
  target: string;
  name: string;
  created_at: string;
}

const COLS = 'id, project, name, ownership, owner_box_id, source, size_bytes, sized_at, created_at';

export class VolumesRepo {
  constructor(private readonly db: Db) {}

  get(project: string, name: string): VolumeRow | undefined {
    return this.db.prepare(`SELECT ${COLS} FROM volumes WHERE project = ? AND name = ?`).get(project, name) as VolumeRow | undefined;
  }

  byId(id: string): VolumeRow | undefined {
    return this.db.prepare(`SELECT ${COLS} FROM volumes WHERE id = ?`).get(id) as VolumeRow | undefined;
  }

  list(project?: string): VolumeRow[] {
    return project === undefined
      ? (this.db.prepare(`SELECT ${COLS} FROM volumes ORDER BY project, name`).all() as VolumeRow[])
      : (this.db.prepare(`SELECT ${COLS} FROM volumes WHERE project = ? ORDER BY name`).all(project) as VolumeRow[]);
  }

  ownedBy(boxId: string): VolumeRow[] {
    return this.db.prepare(`SELECT ${COLS} FROM volumes WHERE owner_box_id = ? ORDER BY name`).all(boxId) as VolumeRow[];
  }

  insert(row: VolumeRow): void {
    this.db
      .prepare(`INSERT INTO volumes (${COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
      .run(row.id, row.project, row.name, row.ownership, row.owner_box_id, row.source, row.size_bytes, row.sized_at, row.created_at);
  }

  delete(id: string): void {
    this.db.prepare('DELETE FROM volumes WHERE id = ?').run(id);
  }

  makePersistent(id: string): void {
    this.db.prepare("UPDATE volumes SET ownership = 'persistent', owner_box_id = NULL WHERE id = ?").run(id);
  }

  ids(): string[] {
    return (this.db.prepare('SELECT id FROM volumes').all() as Array<{ id: string }>).map((r) => r.id);
  }

  setSize(id: string, sizeBytes: number | null, sizedAt: string | null): void {
    this.db.prepare('UPDATE volumes SET size_bytes = ?, sized_at = ? WHERE id = ?').run(sizeBytes, sizedAt, id);
  }

  /** Volumes never measured, or last measured before `before` (ISO time). */
  staleSizes(before: string): VolumeRow[] {
    return this.db.prepare(`SELECT ${COLS} FROM volumes WHERE sized_at IS NULL OR sized_at < ?`).all(before) as VolumeRow[];
  }

  // --- snapshots -------------------------------------------------------------------------

  snapshots(volumeId: string): VolumeSnapshotRow[] {
    return this.db
      .prepare('SELECT volume_id, name, description, size_bytes, created_at FROM volume_snapshots WHERE volume_id = ? ORDER BY seq')
      .all(volumeId) as VolumeSnapshotRow[];
  }

  snapshot(volumeId: string, name: string): VolumeSnapshotRow | undefined {
    return this.db
      .prepare('SELECT volume_id, name, description, size_bytes, created_at FROM volume_snapshots WHERE volume_id = ? AND name = ?')
      .get(volumeId, name) as VolumeSnapshotRow | undefined;
  }

  insertSnapshot(row: VolumeSnapshotRow): void {
    const seq = (this.db.prepare('SELECT COALESCE(MAX(seq), 0) + 1 AS n FROM volume_snapshots WHERE volume_id = ?').get(row.volume_id) as { n: number }).n;
    this.db
      .prepare('INSERT INTO volume_snapshots (volume_id, name, description, size_bytes, created_at, seq) VALUES (?, ?, ?, ?, ?, ?)')
      .run(row.volume_id, row.name, row.description, row.size_bytes, row.created_at, seq);
  }

  deleteSnapshot(volumeId: string, name: string): void {
    this.db.prepare('DELETE FROM volume_snapshots WHERE volume_id = ? AND name = ?').run(volumeId, name);
  }

  allSnapshots(): Array<{ volume_id: string; name: string }> {
    return this.db.prepare('SELECT volume_id, name FROM volume_snapshots').all() as Array<{ volume_id: string; name: string }>;
  }

  snapshotsWithoutSize(): Array<{ volume_id: string; name: string }> {
    return this.db.prepare('SELECT volume_id, name FROM volume_snapshots WHERE size_bytes IS NULL').all() as Array<{ volume_id: string; name: string }>;
  }

  setSnapshotSize(volumeId: string, name: string, sizeBytes: number): void {
    this.db.prepare('UPDATE volume_snapshots SET size_bytes = ? WHERE volume_id = ? AND name = ?').run(sizeBytes, volumeId, name);
  }

  // --- backup parents ----------------------------------------------------------------------

  backupParent(volumeId: string, target: string): BackupParentRow | undefined {
    return this.db
      .prepare('SELECT volume_id, target, name, created_at FROM volume_backup_parents WHERE volume_id = ? AND target = ?')
      .get(volumeId, target) as BackupParentRow | undefined;
  }

  backupParents(volumeId: string): BackupParentRow[] {
    return this.db.prepare('SELECT volume_id, target, name, created_at FROM volume_backup_parents WHERE volume_id = ?').all(volumeId) as BackupParentRow[];
  }

  allBackupParents(): BackupParentRow[] {
    return this.db.prepare('SELECT volume_id, target, name, created_at FROM volume_backup_parents').all() as BackupParentRow[];
  }

  setBackupParent(row: BackupParentRow): void {
    this.db
      .prepare('INSERT INTO volume_backup_parents (volume_id, target, name, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (volume_id, target) DO UPDATE SET name = excluded.name, created_at = excluded.created_at')
      .run(row.volume_id, row.target, row.name, row.created_at);
  }

  deleteBackupParent(volumeId: string, target: string): void {
    this.db.prepare('DELETE FROM volume_backup_parents WHERE volume_id = ? AND target = ?').run(volumeId, target);
  }
}
