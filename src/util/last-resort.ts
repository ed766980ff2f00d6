/**
 * The process's last-resort policy. Every DICOM handler, job and HTTP route catches its own errors, so
 * reaching these handlers means a bug. A rejected promise nobody awaited leaves no half-done state behind
 * (each store change is one database transaction): log it with its stack, count it, stay up. A synchronous
 * exception that unwound to the event loop may have left anything half done: log it and exit 70, so the
 * supervisor (systemd, Docker) restarts us; acknowledged transactions resume from the store.
 */
import type { Logger } from 'pino';

/** Exit code after an uncaught exception (EX_SOFTWARE: an internal software error). */
export const UNCAUGHT_EXCEPTION_EXIT_CODE = 70;

export function installLastResortPolicy(logger: Logger, countInternalError: (where: 'unhandled-rejection') => void): void {
  process.on('unhandledRejection', (reason: unknown) => {
    countInternalError('unhandled-rejection');
    logger.error({ err: reason }, 'unhandled promise rejection (a bug): logged and counted; the service stays up');
  });
  process.on('uncaughtException', (error: Error, origin: string) => {
    logger.fatal({ err: error, origin }, 'uncaught exception (a bug): exiting so the supervisor restarts the sidecar; unfinished transactions resume from the store');
    process.exit(UNCAUGHT_EXCEPTION_EXIT_CODE);
  });
}
