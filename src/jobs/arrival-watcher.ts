/**
 * Follows Orthanc's changes feed while some transaction waits for late arrivals (a modality often sends
 * its N-ACTION right after its last C-STORE, before Orthanc has indexed everything). A NewInstance change
 * wakes the waiting transactions; nothing is polled while nobody waits.
 */
import type { Logger } from 'pino';
import type { OrthancClient } from '../orthanc/client.js';

export class ArrivalWatcher {
  private since: number | undefined;

  constructor(
    private readonly orthanc: OrthancClient,
    private readonly isAnyoneWaiting: () => boolean,
    private readonly onNewInstances: () => void,
    private readonly logger: Logger,
  ) {}

  async poll(): Promise<void> {
    try {
      if (!this.isAnyoneWaiting()) {
        this.since = undefined;
        return;
      }
      if (this.since === undefined) {
        // First look: the transaction was just checked, so only what arrives from now on matters.
        this.since = await this.orthanc.lastChangeSeq();
        return;
      }
      let sawNewInstance = false;
      for (;;) {
        const page = await this.orthanc.changes(this.since);
        this.since = page.last;
        sawNewInstance ||= page.changes.some((change) => change.changeType === 'NewInstance');
        if (page.done || page.changes.length === 0) break;
      }
      if (sawNewInstance) this.onNewInstances();
    } catch (error) {
      this.logger.debug({ err: (error as Error).message }, 'changes feed unavailable');
    }
  }
}
