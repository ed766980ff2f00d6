/**
 * Follows Orthanc's changes feed: every NewInstance goes into the UID index (so a commitment request
 * finds its instances without a search, on the classic lookup path), and wakes the transactions waiting for late arrivals (a modality
 * often sends its N-ACTION right after its last C-STORE, before Orthanc has indexed everything).
 */
import type { Logger } from 'pino';
import type { OrthancClient } from '../orthanc/client.js';
import type { UidIndex } from '../orthanc/uid-index.js';

export interface FollowerOptions {
  readonly orthancUrl: string;
  /** On first start, how many past changes to index (instances stored shortly before we started). */
  readonly backfillChanges: number;
  /** Pages of changes one poll may read, so a long backlog is caught up over several polls. */
  readonly maxPagesPerPoll: number;
}

const PAGE = 1000;

export class ChangesFollower {
  private running: Promise<void> | undefined;

  constructor(
    private readonly orthanc: OrthancClient,
    private readonly index: UidIndex,
    private readonly onNewInstances: () => void,
    private readonly options: FollowerOptions,
    private readonly logger: Logger,
  ) {}

  /** Reads what is new; concurrent callers share one poll. Never throws. */
  poll(): Promise<void> {
    this.running ??= this.readChanges().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async readChanges(): Promise<void> {
    try {
      const newest = await this.orthanc.lastChangeSeq();
      let since = this.index.feedPosition(this.options.orthancUrl);
      // First start, or an Orthanc whose database was replaced (its sequence went backwards).
      if (since === undefined || since > newest) since = Math.max(0, newest - this.options.backfillChanges);
      let sawNewInstance = false;
      for (let page = 0; page < this.options.maxPagesPerPoll && since < newest; page++) {
        const { changes, last } = await this.orthanc.changes(since, PAGE);
        const ids = changes.filter((c) => c.changeType === 'NewInstance').map((c) => c.resourceId);
        if (ids.length > 0) {
          sawNewInstance = true;
          // Only the classic lookup path reads the index; on 1.12 describing IDs is what costs (see OrthancClient).
          if ((await this.orthanc.lookupPath()) === 'classic') this.index.record((await this.orthanc.describeInstances(ids)).map((i) => ({ sopInstanceUid: i.sopInstanceUid, orthancId: i.orthancId })));
        }
        if (last <= since) break;
        since = last;
        this.index.setFeedPosition(this.options.orthancUrl, since);
      }
      this.index.setFeedPosition(this.options.orthancUrl, since);
      if (sawNewInstance) this.onNewInstances();
    } catch (error) {
      this.logger.debug({ err: (error as Error).message }, 'changes feed unavailable');
    }
  }
}
