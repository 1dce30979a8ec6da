/**
 * The streaming exec protocol over a WebSocket (`GET …/boxes/{name}/exec/ws`), shared by the
 * server and the remote CLI:
 *
 * 1. the client sends one text frame: the JSON ExecRequest;
 * 2. the client sends stdin as binary frames, then the text frame `{"type":"stdin_end"}`;
 * 3. the server sends output as binary frames whose first byte is the channel (1 stdout,
 *    2 stderr) followed by the bytes as produced;
 * 4. the server ends with a text frame `{"type":"exit","exit_code":N}` or
 *    `{"type":"error", statusCode, code, message, hint?}` and closes.
 */
export const CHANNEL_STDOUT = 1;
export const CHANNEL_STDERR = 2;

export type ServerMessage =
  | { type: 'exit'; exit_code: number }
  | { type: 'error'; statusCode: number; code: string; message: string; hint?: string };

export type ClientControl = { type: 'stdin_end' };
