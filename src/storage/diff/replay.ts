/**
 * Replays an incremental send stream (parent = the old tree) into the set of paths that
 * may differ between the old and the new tree.
 *
 * The stream is a list of operations on the receiver's tree as it evolves, so its paths
 * name the *current* state: new inodes are born under orphan names (`o<ino>-<gen>-<n>`)
 * and renamed into place, deleted trees are first renamed to orphan names and emptied
 * there, a file rename is `link` + `unlink`. We simulate the namespace lazily: a node
 * exists for each name the stream touched; an untouched name below a node that came
 * from the old tree is that old tree's entry (`origin`). At the end every touched node
 * contributes its old path (its origin) and its new path (where it ended up).
 *
 * Past `keepNew` new entries in new directories, what the stream creates in a directory it
 * created is let go as soon as it is placed there, and that new tree is listed from the new
 * tree when verified, not replayed (`listNew`): a million new files in new directories cost
 * their directories, not a node and a candidate each (below the limit, the stream's own
 * entries decide without any I/O). The other way round, an old directory the stream
 * removed (rmdir) lets go of the entries removed from it once there are `dropEmptied` of
 * them below it: the old tree's subtree is listed instead, so a million removed files
 * cost their directories.
 *
 * The result is deliberately a superset: verify.ts lstat()s both trees at each candidate
 * and decides. What the replay must never do is miss a path; anything it cannot make
 * sense of throws SendStreamError so the caller falls back to the full walk.
 */
import { SendStreamError, type SendCommand, type StreamPath } from '../sendstream.js';
import type { Meta } from './sorted.js';

/** A path that may differ between the trees, with what the stream says about it. */
export interface Candidate {
  /** Relative to the tree root, no leading '/'; the root itself is empty. */
  path: Buffer;
  /** Something that was not here in the old tree ended here (a new inode, a rename, a link). */
  maybeAdded: boolean;
  /** Something that was here in the old tree left (unlinked, removed or renamed away). */
  maybeDeleted: boolean;
  /** The inode here had its data changed (write, update_extent, clone, truncate). */
  content: boolean;
  /** The inode here had its mode or owner changed. */
  attrs: boolean;
  /** The inode here had an xattr set or removed. */
  xattrs: boolean;
  /**
   * The inode that ended here was created by the stream (all its names are in the stream;
   * for a directory, every entry it holds in the new tree is a candidate of its own, or
   * else `listNew`).
   */
  newInode: boolean;
  /**
   * A directory the stream created ended here, and nothing below it in the new tree is a
   * candidate: its new subtree is to be listed (all added when the old tree has nothing
   * here, else compared with the old tree's subtree by a walk).
   */
  listNew: boolean;
  /**
   * The old tree's directory here was removed by the stream (rmdir), which the kernel
   * emits only once it is empty: every name it held in the old tree is a candidate of its
   * own (unlinked, removed or renamed away).
   */
  emptiedDir: boolean;
  /**
   * When `content`: the byte ranges the stream says changed, as flat [offset, length, …]
   * pairs (write, update_extent, clone), or null for "anywhere" (a truncate, or too many
   * ranges). Outside them an inode that stayed in place shares its extents with the old
   * tree's, so its bytes are equal there. Meaningless for a new name or a new inode.
   */
  ranges: number[] | null;
  /**
   * The stream alone decides this path, without a look at either tree: it is a pure add
   * of an inode the stream created (`maybeAdded`, not `maybeDeleted`), or a pure removal
   * by unlink or rmdir (`maybeDeleted`, not `maybeAdded`). A new name could only have
   * replaced an old entry by a rename into an old directory, and that makes the path a
   * maybe-deleted candidate too (create and link fail on an existing name, so the stream
   * removes the old entry first, and that removal is a candidate of the same path); an
   * unlinked entry is no directory, and an rmdir'ed one was emptied by the stream. (The tree
   * comparison, tree.ts, marks a new inode added where the old tree had nothing the same way.)
   */
  sure: boolean;
  /**
   * Both sides' lstat of this path, when whoever made the candidate read them already (the
   * tree comparison has both inode items of an inode that stayed at its path): verification
   * then looks at neither tree for them.
   */
  known?: { a: Meta; b: Meta };
  /**
   * Where another entry took this path (`maybeAdded` and `maybeDeleted`): whether the xattrs
   * (names and values) of the old and the new entry differ, when whoever made the candidate
   * read them (the tree comparison, from their items). No getfattr is run for it then.
   */
  replacedXattrs?: 'same' | 'differ';
}

interface InodeState {
  content: boolean;
  attrs: boolean;
  xattrs: boolean;
  created: boolean;
  ranges: number[] | null;
}

/**
 * An old directory removed with at least this many removed entries below it lets go of them
 * (its old subtree is listed instead): below it, the stream's own entries cost no I/O.
 */
const DROP_EMPTIED = 256;
/**
 * New non-directories placed in new directories (each placement counts) before the new
 * directories that receive more are listed instead; those filled before stay replayed
 * entry by entry.
 */
const KEEP_NEW = 4096;

/** Where the replay starts letting go of entries (tests set them low). */
export interface ReplayLimits {
  /** Placements of new non-directories into new directories kept, in all (see KEEP_NEW). */
  keepNew?: number;
  /** Removed entries below a removed old directory past which its old tree is listed. */
  dropEmptied?: number;
}

/** Past this many changed ranges in one inode, the whole file is compared. */
const MAX_RANGES = 256;

/**
 * Told when the stream is done with the data of an inode that is, so far, at its old path:
 * the caller may compare that path's bytes early, while the stream is still arriving
 * (both trees are read-only, so the answer cannot change; verify re-checks the ranges).
 */
export type InPlaceContentHook = (path: Buffer, ranges: readonly number[] | null) => void;

/**
 * Paths and names are the stream's latin1 strings (StreamPath): a character per byte, so
 * they are compared, split and used as map keys as strings, and become the candidates'
 * Buffers only at the end.
 */
class Node {
  parent: Node | null;
  /** The name in its parent (the parent's map key). */
  name: string;
  /** Explicit entries below this node; null marks a name that was removed or renamed away. */
  children: Map<string, Node | null> | undefined;
  moved = false;
  removed = false;
  /** Removed by rmdir (so it was empty then). */
  emptied = false;
  /** Removed by unlink (so no directory). */
  unlinked = false;
  /** The directory this entry was in in the old tree (null for the root and new nodes). */
  oldParent: Node | null = null;
  /**
   * Entries of this old directory that were removed (unlink, rmdir), whose only part in the
   * diff is their old path below it: let go, with those they hold, if it is removed in turn.
   */
  removedKids: Node[] | undefined;
  /** How many nodes `removedKids` holds, with those they hold in turn. */
  removedWeight = 0;
  /** A directory the stream created (mkdir). */
  newDir = false;
  /** A directory the stream created, with new entries let go below it: listed, not replayed. */
  dropsBelow = false;
  /**
   * Created by the stream below a `newDir` and let go there: in no `children` map, and not
   * (or no longer) in `touched`. Looked up again by its path, it comes back as a new node.
   */
  dropped = false;
  touched = false;

  constructor(
    /** Where this entry was in the old tree (null for a new node). */
    readonly origin: StreamPath | null,
    parent: Node | null,
    name: string,
    readonly inode: InodeState,
  ) {
    this.parent = parent;
    this.name = name;
  }
}

/** The ranges of an inode with no data command yet: shared, replaced on the first push. */
const NO_RANGES: number[] = [];
Object.freeze(NO_RANGES);
const freshInode = (created: boolean): InodeState => ({ content: false, attrs: false, xattrs: false, created, ranges: NO_RANGES });

const joinRel = (dir: StreamPath, name: string): StreamPath => (dir.length === 0 ? name : `${dir}/${name}`);

/** currentKey's answer for a node below a new directory that is listed (`dropsBelow`). */
const BELOW_NEW_DIR = Symbol('below a new directory');

const ORPHAN = /^o\d+-\d+-\d+$/;
const isOrphanName = (name: string): boolean => name.length < 64 && ORPHAN.test(name);

/** The names of a relative path, without empty ones ("a//b/" is a, b). */
const splitRel = (path: StreamPath): string[] => path.split('/').filter((part) => part.length > 0);

/** Feed `apply` every command of one incremental stream, then call `finish`. */
export class SendReplay {
  private readonly root = new Node('', null, '', freshInode(false));
  private readonly touched = new Set<Node>();
  /** Old entries a rename may have replaced, as (directory from the old tree, name) pairs. */
  private readonly replacedIn: Node[] = [];
  private readonly replacedName: string[] = [];
  private started = false;
  private ended = false;
  /** The inode whose data commands are arriving (send emits one inode's data in a row). */
  private dataOf: { path: StreamPath; node: Node } | null = null;
  /**
   * The path last looked up or given an entry, and its node, until the namespace changes:
   * a new inode's rename into place is followed by its chown, chmod and extents, all on
   * the path it was just given.
   */
  private lastPath: StreamPath | null = null;
  private lastNode: Node | null = null;
  /** The directory part of the last path resolved by `parentOf`, and its node, until the namespace changes above it. */
  private lastDir: StreamPath | null = null;
  private lastDirNode: Node | null = null;

  /** New directories that let go of new entries (see `dropsBelow`). */
  private readonly dropDirs: Node[] = [];
  /** New entries kept in new directories so far (see `keepNew`). */
  private newKept = 0;
  private readonly keepNew: number;
  private readonly dropEmptied: number;

  constructor(
    private readonly onInPlaceContent?: InPlaceContentHook,
    limits: ReplayLimits = {},
  ) {
    this.keepNew = limits.keepNew ?? KEEP_NEW;
    this.dropEmptied = limits.dropEmptied ?? DROP_EMPTIED;
  }

  apply(command: SendCommand): void {
    if (this.ended) throw new SendStreamError(`${command.cmd} after the end command`);
    if (this.dataOf && !(isDataCommand(command) && command.path === this.dataOf.path)) this.dataDone();
    if (!this.started) {
      if (command.cmd === 'snapshot') {
        this.started = true;
        return;
      }
      if (command.cmd === 'subvol') {
        throw new SendStreamError('a full stream (no parent) cannot be diffed against the old tree');
      }
      throw new SendStreamError(`the stream starts with ${command.cmd}, not snapshot`);
    }
    switch (command.cmd) {
      case 'subvol':
      case 'snapshot':
        throw new SendStreamError('more than one subvolume in the stream');
      case 'mkfile':
      case 'mkdir':
      case 'mknod':
      case 'mkfifo':
      case 'mksock':
      case 'symlink':
        this.create(command.path, freshInode(true), command.cmd === 'mkdir');
        return;
      case 'link':
        this.create(command.path, this.lookup(command.target).inode);
        return;
      case 'rename': {
        const node = this.lookup(command.path);
        this.lastPath = null;
        this.detach(node);
        node.moved = true;
        node.dropped = false;
        this.mark(node);
        const [parent, name] = this.parentOf(command.to);
        this.attach(parent, name, node);
        this.remember(command.to, node);
        return;
      }
      case 'unlink':
      case 'rmdir': {
        const node = this.lookup(command.path);
        this.lastPath = null;
        this.detach(node);
        node.removed = true;
        if (command.cmd === 'rmdir') {
          node.emptied = true;
          this.emptied(node);
        } else node.unlinked = true;
        this.mark(node);
        // An old entry, wherever the stream moved it meanwhile (the kernel empties a removed
        // tree under orphan names): nothing of it counts but its old path, below its old
        // directory, which a listing of that directory in the old tree would give too.
        const up = node.oldParent;
        if (up !== null && up !== this.root) {
          (up.removedKids ??= []).push(node);
          up.removedWeight += 1 + node.removedWeight;
        }
        return;
      }
      case 'set_xattr':
      case 'remove_xattr':
        this.inodeOf(command.path).xattrs = true;
        return;
      case 'write':
      case 'clone':
      case 'truncate':
      case 'update_extent': {
        const node = this.lookup(command.path);
        this.mark(node);
        const inode = node.inode;
        inode.content = true;
        if (command.cmd === 'truncate') inode.ranges = null;
        else if (inode.ranges !== null) {
          if (inode.ranges === NO_RANGES) inode.ranges = [];
          inode.ranges.push(command.offset, command.cmd === 'write' ? command.data.length : command.length);
          if (inode.ranges.length > MAX_RANGES * 2) inode.ranges = null;
        }
        if (this.onInPlaceContent && !this.dataOf) this.dataOf = { path: command.path, node };
        return;
      }
      case 'chmod':
      case 'chown':
        this.inodeOf(command.path).attrs = true;
        return;
      case 'utimes':
        // Timestamps never count as a change.
        return;
      case 'end':
        this.ended = true;
        return;
    }
  }

  private dataDone(): void {
    const { path, node } = this.dataOf as { path: StreamPath; node: Node };
    this.dataOf = null;
    if (node.origin !== null && node.parent !== null && path === node.origin) this.onInPlaceContent?.(Buffer.from(path, 'latin1'), node.inode.ranges);
  }

  /** The candidates, deduplicated by path (flags merged), in the byte order of their paths. */
  finish(): Candidate[] {
    if (!this.started) throw new SendStreamError('the stream has no snapshot command');
    if (this.dataOf) this.dataDone();
    const out = new Map<StreamPath, Candidate>();
    const entry = (k: StreamPath): Candidate => {
      let c = out.get(k);
      if (!c) {
        c = { path: Buffer.from(k, 'latin1'), maybeAdded: false, maybeDeleted: false, content: false, attrs: false, xattrs: false, newInode: false, listNew: false, emptiedDir: false, ranges: NO_RANGES, sure: true };
        out.set(k, c);
      }
      return c;
    };
    const add = (c: Candidate, node: Node, added: boolean, deleted: boolean): void => {
      // Only the node that came from this path in the old tree says what the old entry was.
      if (!added && node.emptied) c.emptiedDir = true;
      if (node.inode.content) c.ranges = mergeRanges(c.ranges, node.inode.ranges);
      c.maybeAdded ||= added;
      c.maybeDeleted ||= deleted;
      c.content ||= node.inode.content;
      c.attrs ||= node.inode.attrs;
      c.xattrs ||= node.inode.xattrs;
      c.newInode ||= added && node.inode.created;
      // Each node that names this path must be certain of its part: a new inode that ended
      // here, or an old entry that an unlink or an rmdir removed.
      if (!(added ? node.inode.created : deleted && (node.unlinked || node.emptied))) c.sure = false;
    };
    // A new tree is listed from its top: every new directory above one that let go of
    // entries (where it is now) lists too.
    for (const d of this.dropDirs) {
      for (let n: Node | null = d; n !== null && n !== this.root; n = n.parent) if (n.newDir) n.dropsBelow = true;
    }
    for (const node of this.touched) {
      const now = this.currentKey(node);
      if (now === BELOW_NEW_DIR) {
        // Its new name is listed with the new directory above it; only its old one counts.
        if (node.origin !== null) add(entry(node.origin), node, false, true);
        continue;
      }
      const was = node.origin;
      const stayed = now !== null && now === was;
      if (was !== null) add(entry(was), node, false, !stayed);
      if (now !== null && !stayed) {
        const c = entry(now);
        add(c, node, true, false);
        if (node.dropsBelow) c.listNew = true;
      }
    }
    // Old entries that a rename may have replaced: gone, if they were there.
    for (let i = 0; i < this.replacedIn.length; i++) {
      const dir = (this.replacedIn[i] as Node).origin as StreamPath;
      const c = entry(joinRel(dir, this.replacedName[i] as string));
      c.maybeDeleted = true;
      c.sure = false;
    }
    // In path order, which verification needs: latin1 strings compare as their bytes do,
    // and a string comparison costs less than a Buffer.compare on every step of the sort.
    const candidates = [...out.entries()].sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0)).map((e) => e[1]);
    // An add and a removal at one path is a replaced entry: the trees must compare it.
    for (const c of candidates) if (c.sure && c.maybeAdded === c.maybeDeleted) c.sure = false;
    return candidates;
  }

  /**
   * An old directory was removed: when it held many removed entries, they (and what they
   * held) are let go and the directory is no longer "emptied entry by entry" for the
   * verifier, which then lists its old subtree. Entries moved out of it keep their own.
   */
  private emptied(node: Node): void {
    if (node.origin === null || node.removedWeight < this.dropEmptied) return;
    const stack = node.removedKids ?? [];
    for (let k = stack.pop(); k !== undefined; k = stack.pop()) {
      this.touched.delete(k);
      if (k.removedKids) stack.push(...k.removedKids);
      k.removedKids = undefined;
    }
    node.removedKids = undefined;
    node.removedWeight = 0;
    node.children = undefined;
    node.emptied = false;
  }

  private mark(node: Node): void {
    if (node.touched || node.dropped) return;
    node.touched = true;
    this.touched.add(node);
  }

  private inodeOf(path: StreamPath): InodeState {
    const node = this.lookup(path);
    this.mark(node);
    return node.inode;
  }

  private child(dir: Node, name: string): Node {
    const known = dir.children?.get(name);
    if (known !== undefined) {
      if (known === null) throw new SendStreamError(`the stream uses ${name} after removing it`);
      return known;
    }
    if (dir.dropsBelow) {
      // Something the stream created here and let go (see `attach`): it is new, and all
      // that matters of it is where it goes.
      const node = new Node(null, dir, name, freshInode(true));
      node.dropped = true;
      return node;
    }
    if (dir.origin === null) throw new SendStreamError(`the stream uses an unknown entry ${name} of a new directory`);
    const node = new Node(joinRel(dir.origin, name), dir, name, freshInode(false));
    node.oldParent = dir;
    (dir.children ??= new Map()).set(name, node);
    return node;
  }

  private lookup(path: StreamPath): Node {
    if (path === this.lastPath) return this.lastNode as Node;
    const node = path.length === 0 ? this.root : this.child(...this.parentOf(path));
    this.remember(path, node);
    return node;
  }

  private remember(path: StreamPath, node: Node): void {
    this.lastPath = path;
    this.lastNode = node;
  }

  /** The directory that holds `path` (a node) and the last name in it. */
  private parentOf(path: StreamPath): [Node, string] {
    const slash = path.lastIndexOf('/');
    const name = path.slice(slash + 1);
    if (slash > 0 && name.length > 0) {
      // Commands come in runs in one directory: the last one resolved is kept.
      const dir = path.slice(0, slash);
      if (dir === this.lastDir) return [this.lastDirNode as Node, name];
      let node = this.root;
      for (const part of splitRel(dir)) node = this.child(node, part);
      this.lastDir = dir;
      this.lastDirNode = node;
      return [node, name];
    }
    const parts = splitRel(path);
    const last = parts.pop();
    if (last === undefined) throw new SendStreamError('an operation names the root as its target');
    let node = this.root;
    for (const part of parts) node = this.child(node, part);
    return [node, last];
  }

  /**
   * Forgets the last directory resolved when `node` leaves its place and may be it or hold
   * it: a node with no entries below it looked up holds no directory that was resolved.
   */
  private moving(node: Node): void {
    if (node === this.lastDirNode || node.children !== undefined) this.lastDir = null;
  }

  private create(path: StreamPath, inode: InodeState, dir = false): void {
    this.lastPath = null;
    const [parent, name] = this.parentOf(path);
    const node = new Node(null, parent, name, inode);
    node.newDir = dir;
    this.mark(node);
    // create(2) and link(2) fail on an existing name, so nothing of the old tree is replaced.
    this.attach(parent, name, node, false);
    this.remember(path, node);
  }

  /** Puts `node` at `parent/name`; whatever was there (known or only in the old tree) is gone. */
  private attach(parent: Node, k: string, node: Node, mayReplaceOld = true): void {
    const existing = parent.children?.get(k);
    if (existing) {
      this.moving(existing);
      existing.removed = true;
      existing.parent = null;
      this.mark(existing);
    } else if (existing === undefined && parent.origin !== null && mayReplaceOld && !(parent === this.root && isOrphanName(k))) {
      // The old tree may hold an entry here that this replaces: make it a candidate. (The
      // kernel picks orphan names that exist in neither tree, so those replace nothing.)
      // Kept as its directory and name, not as a node: one for every file renamed into place.
      this.replacedIn.push(parent);
      this.replacedName.push(k);
    }
    node.parent = parent;
    node.name = k;
    if (parent.newDir && node.inode.created && !node.newDir && this.newKept++ >= this.keepNew) {
      // A new non-directory in a new directory, past the limit: listed with that directory,
      // so let go.
      if (existing) parent.children?.delete(k);
      if (node.touched) {
        this.touched.delete(node);
        node.touched = false;
      }
      node.dropped = true;
      if (!parent.dropsBelow) {
        parent.dropsBelow = true;
        this.dropDirs.push(parent);
      }
      return;
    }
    (parent.children ??= new Map()).set(k, node);
  }

  private detach(node: Node): void {
    this.moving(node);
    const parent = node.parent;
    if (parent === null) throw new SendStreamError('the stream removes or renames the root');
    // A removed name is remembered (its old entry is gone), except the kernel's orphan
    // names: no tree holds them and each is used once, so a million new inodes born under
    // them leave no million marks behind.
    if ((parent === this.root && isOrphanName(node.name)) || node.dropped) parent.children?.delete(node.name);
    else parent.children?.set(node.name, null);
    node.parent = null;
  }

  /**
   * Where `node` is now (as a latin1 key), null when it (or a directory above it) was
   * removed, or BELOW_NEW_DIR when a new directory that is listed (`dropsBelow`) is above it.
   */
  private currentKey(node: Node): string | null | typeof BELOW_NEW_DIR {
    const names: string[] = [];
    let n: Node = node;
    let belowNew = false;
    while (n !== this.root) {
      if (n.parent === null) return null;
      names.push(n.name);
      n = n.parent;
      if (n.dropsBelow) belowNew = true;
    }
    if (belowNew) return BELOW_NEW_DIR;
    return names.length === 1 ? (names[0] as string) : names.reverse().join('/');
  }
}

const isDataCommand = (c: SendCommand): c is Extract<SendCommand, { cmd: 'write' | 'clone' | 'truncate' | 'update_extent' }> =>
  c.cmd === 'write' || c.cmd === 'clone' || c.cmd === 'truncate' || c.cmd === 'update_extent';

/** The union of two range lists (null = everywhere). */
export function mergeRanges(a: number[] | null, b: readonly number[] | null): number[] | null {
  if (a === null || b === null) return null;
  if (b.length === 0) return a;
  if (a.length === 0) return [...b];
  return a.length + b.length > MAX_RANGES * 2 ? null : [...a, ...b];
}

/** Replays a whole command sequence (convenience for tests). */
export function replayCommands(commands: Iterable<SendCommand>, limits: ReplayLimits = {}): Candidate[] {
  const replay = new SendReplay(undefined, limits);
  for (const c of commands) replay.apply(c);
  return replay.finish();
}
