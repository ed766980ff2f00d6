/**
 * The InstanceCatalog over Orthanc's REST API: batched lookups by whichever path Orthanc's capabilities
 * allow (OrthancClient), with the UID index's hints on the classic path (Orthanc before 1.12.5), whose
 * stale entries are dropped as lookups disprove them.
 */
import type { CatalogEntry, InstanceCatalog } from '../transactions/instance-catalog.js';
import type { OrthancClient } from './client.js';
import type { UidIndex } from './uid-index.js';

/** How long a verification waits for the changes feed before looking up with the hints it has. */
const CATCH_UP_LIMIT_MS = 2000;

export class OrthancCatalog implements InstanceCatalog {
  constructor(
    private readonly orthanc: Pick<OrthancClient, 'lookupPath' | 'lookupInstances'>,
    /** UID -> Orthanc ID hints, and a way to bring them up to date first (the changes follower). */
    private readonly index?: { readonly uids: UidIndex; readonly catchUp: () => Promise<void> },
  ) {}

  async find(sopInstanceUids: readonly string[]): Promise<Map<string, CatalogEntry>> {
    // The UID index saves searches on the classic path only (see OrthancClient).
    const hints = this.index && (await this.orthanc.lookupPath()) === 'classic' ? this.index.uids.find(sopInstanceUids) : undefined;
    const stored = await this.orthanc.lookupInstances(sopInstanceUids, hints);
    if (hints) {
      const stale = [...hints].filter(([uid, id]) => stored.get(uid)?.orthancId !== id).map(([uid]) => uid);
      if (stale.length > 0) this.index!.uids.forget(stale);
    }
    const found = new Map<string, CatalogEntry>();
    for (const [uid, hit] of stored) found.set(uid, { id: hit.orthancId, sopClassUid: hit.sopClassUid });
    return found;
  }

  /** Indexes what Orthanc received up to now (bounded), so that just-stored instances need no search. */
  async prepare(): Promise<void> {
    if (!this.index) return;
    const path = await this.orthanc.lookupPath().catch(() => 'classic' as const);
    if (path !== 'classic') return;
    await Promise.race([this.index.catchUp().catch(() => undefined), new Promise((resolve) => setTimeout(resolve, CATCH_UP_LIMIT_MS).unref())]);
  }
}
