/**
 * Network facts the server and the client share: where `zomg serve` listens by default, and
 * which host names are this machine's loopback (the server allows `--no-auth` only there;
 * the client offers the local token file only to a server there).
 */

/** `zomg serve`'s listen address when none is given; the API URL boxes are told by default. */
export const DEFAULT_LISTEN = '127.0.0.1:7070';

/** True for a loopback host name: `localhost`, `::1` (without brackets) or any 127.x.y.z. */
export const isLoopbackHost = (host: string): boolean => host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
