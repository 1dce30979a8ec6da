/**
 * Paging for listings: a page is at most `maxResults` items after the item the page token
 * names. The token is opaque to clients (base64url of the last item's sort key), so a page
 * never shifts when items are added or removed before it.
 */
import { InvalidArgumentError } from './errors.js';

export interface PageOptions {
  /** Where to go on from: the `next_page_token` of the previous page. */
  pageToken?: string;
  /** At most this many items. */
  maxResults?: number;
}

export interface Page<T> {
  items: T[];
  /** Absent on the last page. */
  nextPageToken?: string;
}

const encode = (key: string): string => Buffer.from(JSON.stringify({ after: key }), 'utf8').toString('base64url');

function decode(token: string): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    parsed = undefined;
  }
  const after = (parsed as { after?: unknown } | undefined)?.after;
  if (typeof after !== 'string' || token.length > 1024) {
    throw new InvalidArgumentError('invalid page token: pass the next_page_token of the previous page as it was', { code: 'ZOMG_INVALID_PAGE_TOKEN' });
  }
  return after;
}

/**
 * The page of `items` that `options` asks for, in the order of `key` (unique per item; the
 * listings' own order, so a paged listing reads like an unpaged one). Without options, all
 * of `items` as they are.
 */
export function pageOf<T>(items: readonly T[], key: (item: T) => string, options: PageOptions = {}): Page<T> {
  if (options.maxResults !== undefined && (!Number.isInteger(options.maxResults) || options.maxResults < 1)) {
    throw new InvalidArgumentError(`invalid max_results ${options.maxResults}: a positive integer`, { code: 'ZOMG_INVALID_ARGUMENT' });
  }
  if (options.pageToken === undefined && options.maxResults === undefined) return { items: [...items] };
  let rest = [...items].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  if (options.pageToken !== undefined) {
    const after = decode(options.pageToken);
    rest = items.filter((item) => key(item) > after);
  }
  if (options.maxResults === undefined || rest.length <= options.maxResults) return { items: rest };
  const page = rest.slice(0, options.maxResults);
  return { items: page, nextPageToken: encode(key(page[page.length - 1] as T)) };
}

/** Sort keys of the paged listings. Names are a-z, 0-9 and "-", all above " ", so " " separates without reordering. */
export const boxKey = (b: { project: string; name: string }): string => `${b.project} ${b.name}`;
export const baseKey = (b: { name: string }): string => b.name;
export const snapshotKey = (c: { created_at: string; name: string }): string => `${c.created_at} ${c.name}`;
