/** Quoting user input in messages without echoing an unbounded value back. */

/** The most characters of a user's input an error message quotes. */
export const QUOTE_MAX = 100;

/**
 * `value` as a double-quoted string for an error message: control characters escaped, cut to
 * {@link QUOTE_MAX} characters with the number of characters left out.
 */
export function quote(value: string): string {
  const shown = value.length > QUOTE_MAX ? value.slice(0, QUOTE_MAX) : value;
  const escaped = JSON.stringify(shown);
  return value.length > QUOTE_MAX ? `${escaped.slice(0, -1)}…" (${value.length - QUOTE_MAX} more characters)` : escaped;
}

