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

/** The protocol as the OpenAPI document describes it (the `x-websocket` operation). */
export const EXEC_PROTOCOL_DESCRIPTION = [
  'A WebSocket (upgrade with GET; same bearer token). The path parameters are checked before the upgrade: a bad name or a missing box',
  'is an ordinary HTTP error response. Then:',
  '1. the client sends one text frame: the JSON exec request {command, cwd?, env?, shell?, user?} (the ExecBody schema without stdin/background);',
  '2. the client sends stdin as binary frames, then the text frame {"type":"stdin_end"};',
  '3. the server sends output as binary frames whose first byte is the channel (1 stdout, 2 stderr) followed by the bytes as produced;',
  '4. the server ends with a text frame {"type":"exit","exit_code":N} or {"type":"error",statusCode,code,message,hint?} and closes.',
  'A first frame that is binary, not JSON, or not a valid request, and any later text frame other than stdin_end, is answered with an error frame and the socket closed.',
  'Frames are at most 8 MiB.',
].join('\n');
