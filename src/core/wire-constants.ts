/**
 * What the API's two sides agree on besides the shapes of its bodies (those are wire.ts's
 * TypeBox schemas): constants the remote client needs too. Kept apart from wire.ts so that a
 * CLI process never loads TypeBox: only the server validates with the schemas.
 */

/** The media type of the streamed answers (a build's events, a large diff): newline-delimited JSON. */
export const NDJSON = 'application/x-ndjson';

/** The most items one page of a listing holds, and a page's size when the client names none. */
export const PAGE_MAX_RESULTS = 1000;
