/**
 * Watches the store while the sidecar runs: a tiny durable write every few seconds (a full disk or an
 * I/O error shows in /readyz before an N-ACTION meets it), and the file at our path compared with the one
 * we hold open. A store deleted or replaced under us is still open in this process, with every
 * acknowledged transaction in it: we copy it beside the path at once and again at shutdown, log at error
 * level how to put it back, and the start refuses to begin empty while that copy waits (see
 * TransactionStore.open).
 */
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { RESCUED_PREFIX, type TransactionStore } from './transaction-store.js';

export class StoreWatch {
  private timer: NodeJS.Timeout | undefined;
  private healthy = true;
  private rescuePath: string | undefined;
  private rescuing: Promise<void> | undefined;

  constructor(
    private readonly store: TransactionStore,
    private readonly logger: Logger,
    private readonly everyMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  start(): void {
    this.check();
    this.timer = setInterval(() => this.check(), this.everyMs);
    this.timer.unref();
  }

  check(): void {
    if (!this.store.isOpen) return;
    this.store.probeWrite(this.now());
    const health = this.store.health();
    if (!health.ok && this.healthy) this.logger.error({ reason: health.reason }, `store not writable: ${health.reason}; new N-ACTIONs are answered 0110H (the modality keeps its images)`);
    if (health.ok && !this.healthy) this.logger.info('store writable again');
    this.healthy = health.ok;
    if (this.store.fileProblem() && !this.rescuePath) void this.rescue();
  }

  /** Copies the orphaned store beside its path (the same copy is refreshed at each call). */
  private rescue(): Promise<void> {
    this.rescuing ??= (async () => {
      const destination = this.rescuePath ?? join(dirname(this.store.path), `${RESCUED_PREFIX}${new Date(this.now()).toISOString().replace(/[:.]/g, '-')}`);
      this.rescuePath = destination;
      try {
        // The whole data directory may be gone too.
        mkdirSync(dirname(destination), { recursive: true });
        await this.store.copyTo(destination);
        this.logger.error(
          { store: this.store.path, rescuedTo: destination },
          `the store was deleted or replaced while running; what it held is copied to ${destination}: stop the sidecar, move that file to ${this.store.path}, then start it again`,
        );
      } catch (error) {
        this.logger.fatal({ err: error, store: this.store.path }, 'the store was deleted or replaced while running and could not be copied: acknowledged transactions will be lost at the next start');
      }
    })().finally(() => {
      this.rescuing = undefined;
    });
    return this.rescuing;
  }

  /** Stops watching; an orphaned store is copied one last time, with everything done since. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.rescuing;
    if (this.store.isOpen && this.store.fileProblem()) await this.rescue();
  }
}
