/**
 * Structured JSON logs (pino). Log lines carry AE titles, UIDs and counts, never patient data: the
 * N-ACTION holds no PHI and we never log Orthanc's instance contents.
 */
import { pino, type Logger } from 'pino';
import { log as dimseLog } from './dicom/dimse.js';

export type { Logger };

/** `node` (STGCMT_NODE_ID) is on every line, children included: several nodes may log to one place. */
export function createLogger(level: string, node: string): Logger {
  return pino({ level, base: { service: 'stgcmt', node }, timestamp: pino.stdTimeFunctions.isoTime });
}

/**
 * dcmjs-dimse logs through loglevel: its info lines are per-PDU traces (debug for us); its errors are
 * mostly a peer's protocol faults, which we also report ourselves, so they become warnings.
 */
export function routeDimseLogs(logger: Logger): void {
  const child = logger.child({ component: 'dcmjs-dimse' });
  dimseLog.methodFactory = (methodName) => {
    return (...messages: unknown[]) => {
      const msg = messages.map(String).join(' ');
      if (methodName === 'error' || methodName === 'warn') child.warn(msg);
      else child.debug(msg);
    };
  };
  // Its per-PDU traces are built even when nobody reads them: ask for them only when we log at debug.
  dimseLog.setLevel(logger.isLevelEnabled('debug') ? 'trace' : 'warn');
}
