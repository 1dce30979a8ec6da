/**
 * A separate process that runs one engine call and kills itself with SIGKILL when the
 * engine reaches a named fault point — a real `kill -9` mid-mutation, for crash tests.
 * argv[2]: JSON {stateDir, poolPath, step, method, args}.
 */
import { createEngine } from '../../src/engine/engine.js';

const spec = JSON.parse(process.argv[2] as string) as { stateDir: string; poolPath: string; step: string; method: string; args: unknown[] };
const engine = await createEngine({
  stateDir: spec.stateDir,
  poolPath: spec.poolPath,
  reconcile: 'never',
  onSizesPending: () => undefined,
  faultPoint: (step) => {
    if (step === spec.step) process.kill(process.pid, 'SIGKILL');
  },
});
const fn = (engine as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[spec.method];
if (!fn) throw new Error(`no engine method ${spec.method}`);
await fn.apply(engine, spec.args);
await engine.close();
process.exit(3); // the fault point was never reached
