/**
 * Why the sidecar refuses to start on its data directory: one line for the operator, and the exit code
 * main.ts ends with (2 is a configuration error).
 */
export const EXIT_DATA_DIR_IN_USE = 3;
export const EXIT_STORE_UNUSABLE = 4;

export class StoreStartError extends Error {
  constructor(
    message: string,
    readonly exitCode: typeof EXIT_DATA_DIR_IN_USE | typeof EXIT_STORE_UNUSABLE,
  ) {
    super(message);
  }
}

/** The store cannot take a write now (file deleted or replaced, disk full, I/O error): answer 0110H. */
export class StoreUnavailableError extends Error {}

/** SQLite error codes that mean the store itself cannot be written, as opposed to a wrong statement. */
export function isStorageFault(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && /^SQLITE_(FULL|IOERR|READONLY|CANTOPEN|CORRUPT|NOTADB|PERM)/.test(code);
}
