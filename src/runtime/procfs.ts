/** The /proc readers live in system/procfs.ts (one liveness check for every layer); re-exported for the runtime. */
export { bootId, childPids, readProcStat, type ProcStat } from '../system/procfs.js';
