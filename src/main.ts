/**
 * Entry point of `npm start`: load the configuration, start the sidecar, stop it cleanly on SIGTERM/SIGINT.
 */
import { ConfigError, loadConfig } from './config.js';
import { createLogger } from './log.js';
import { startSidecar } from './sidecar.js';
import { StoreStartError } from './store/errors.js';
import { installLastResortPolicy } from './util/last-resort.js';

async function main(): Promise<void> {
  let loaded;
  try {
    loaded = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`stgcmt: configuration error: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const { config, warnings } = loaded;
  const logger = createLogger(config.logLevel, config.nodeId);
  for (const warning of warnings) logger.warn({ setting: warning.setting }, warning.message);
  let countInternalError = (where: string): void => void where;
  // Reaching these means a bug: see last-resort.ts for why one stays up and the other exits.
  installLastResortPolicy(logger, (where) => countInternalError(where));
  let sidecar;
  try {
    sidecar = await startSidecar(config, logger);
  } catch (error) {
    // The data directory is in use, or the store is damaged or unusable: one line, and a code to act on.
    if (error instanceof StoreStartError) {
      process.stderr.write(`stgcmt: ${error.message}\n`);
      process.exit(error.exitCode);
    }
    throw error;
  }
  countInternalError = (where) => sidecar.countInternalError(where);
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'signal received');
    sidecar.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'unclean shutdown');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((error: unknown) => {
  process.stderr.write(`stgcmt: failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
