/**
 * Who gets a connection slot and who gets an association slot on our DICOM port. Slots belong to
 * associations, not to sockets: a socket that has not (yet) sent an acceptable A-ASSOCIATE-RQ holds only a
 * connection slot, and when connection slots run out the oldest such socket is evicted for a newcomer
 * (a real requestor sends its RQ within milliseconds; a port scanner or an idle socket does not). One host
 * and one AE title each get at most a share of the slots, so no single peer can lock the others out.
 * Pure bookkeeping: the listener closes what this says to close.
 */

export interface AdmissionLimits {
  /** TCP connections open at once, associated or not. */
  readonly maxConnections: number;
  /** TCP connections open at once from one IP address. */
  readonly maxConnectionsPerHost: number;
  /** Accepted associations at once. */
  readonly maxAssociations: number;
  /** Accepted associations at once for one calling AE title. */
  readonly maxAssociationsPerAe: number;
}

/** A socket without an association may be evicted for a newcomer once it has waited this long. */
export const EVICTABLE_AFTER_MS = 1000;

export type ConnectionRefusal = 'connection-limit' | 'host-limit';
export type AssociationRefusal = 'association-limit' | 'ae-limit';

interface Entry {
  readonly host: string;
  readonly since: number;
  aeTitle: string | undefined;
}

export class Admission<Id> {
  private readonly entries = new Map<Id, Entry>();
  private readonly perHost = new Map<string, number>();
  private readonly perAe = new Map<string, number>();
  private associations = 0;

  constructor(private readonly limits: AdmissionLimits) {}

  get openConnections(): number {
    return this.entries.size;
  }

  get openAssociations(): number {
    return this.associations;
  }

  /**
   * A new socket from `host`. Admitted, possibly at the cost of an idle unassociated socket (`evict`, which
   * the caller must close), or refused at once.
   */
  connect(id: Id, host: string, now: number): { readonly ok: true; readonly evict?: Id } | { readonly ok: false; readonly why: ConnectionRefusal } {
    if ((this.perHost.get(host) ?? 0) >= this.limits.maxConnectionsPerHost) return { ok: false, why: 'host-limit' };
    let evict: Id | undefined;
    if (this.entries.size >= this.limits.maxConnections) {
      evict = this.oldestUnassociated(now);
      if (evict === undefined) return { ok: false, why: 'connection-limit' };
      this.close(evict);
    }
    this.entries.set(id, { host, since: now, aeTitle: undefined });
    this.perHost.set(host, (this.perHost.get(host) ?? 0) + 1);
    return evict === undefined ? { ok: true } : { ok: true, evict };
  }

  /** The socket's A-ASSOCIATE-RQ is otherwise acceptable: is there an association slot for it? */
  associate(id: Id, aeTitle: string): { readonly ok: true } | { readonly ok: false; readonly why: AssociationRefusal } {
    const entry = this.entries.get(id);
    if (!entry) throw new Error('associate() on a connection that is not admitted');
    if (entry.aeTitle !== undefined) return { ok: true };
    if (this.associations >= this.limits.maxAssociations) return { ok: false, why: 'association-limit' };
    if ((this.perAe.get(aeTitle) ?? 0) >= this.limits.maxAssociationsPerAe) return { ok: false, why: 'ae-limit' };
    entry.aeTitle = aeTitle;
    this.associations++;
    this.perAe.set(aeTitle, (this.perAe.get(aeTitle) ?? 0) + 1);
    return { ok: true };
  }

  /** Frees whatever the socket held; safe to call more than once. */
  close(id: Id): void {
    const entry = this.entries.get(id);
    if (!entry) return;
    this.entries.delete(id);
    decrement(this.perHost, entry.host);
    if (entry.aeTitle !== undefined) {
      this.associations--;
      decrement(this.perAe, entry.aeTitle);
    }
  }

  private oldestUnassociated(now: number): Id | undefined {
    // Map iteration is insertion order: the first match is the oldest.
    for (const [id, entry] of this.entries) {
      if (entry.aeTitle === undefined && now - entry.since >= EVICTABLE_AFTER_MS) return id;
    }
    return undefined;
  }
}

function decrement(counts: Map<string, number>, key: string): void {
  const next = (counts.get(key) ?? 0) - 1;
  if (next > 0) counts.set(key, next);
  else counts.delete(key);
}
