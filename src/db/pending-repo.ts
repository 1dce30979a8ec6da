/** Intents: a subvolume path a live process is putting into place before its row exists. */
import type { Db } from './database.js';

export class PendingRepo {
  constructor(private readonly db: Db) {}

  add(path: string, pid: number, at: string): void {
    this.db.prepare('INSERT OR REPLACE INTO pending_paths (path, pid, started_at) VALUES (?, ?, ?)').run(path, pid, at);
  }

  remove(path: string): void {
    this.db.prepare('DELETE FROM pending_paths WHERE path = ?').run(path);
  }

  all(): Array<{ path: string; pid: number }> {
    return this.db.prepare('SELECT path, pid FROM pending_paths').all() as Array<{ path: string; pid: number }>;
  }
}
