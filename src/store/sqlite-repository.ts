/**
 * The TransactionRepository over the embedded SQLite store: one node, one file. Calls run synchronously
 * inside (better-sqlite3), so each promise resolves after its write is committed to disk, as the
 * interface promises.
 *
 * Claims live in this process, not in the file: one process owns the file (the data-directory lock), so
 * nothing else could take a claim over, and a claim that is not a write keeps a full disk from stopping
 * deliveries (a report is sent, and recording it waits for space, as before claims existed). They follow
 * the same rules as on PostgreSQL (the same contract suite runs on both): exclusive, a new epoch each
 * time, ended by expiry, release, a reopen or an expiry of the report.
 */
import type { Verdict } from '../commitment/types.js';
import type { PeerEntry } from '../peers/peer-directory.js';
import type {
  DeliveryAttemptRecord,
  FailureRecord,
  InstanceOutcomeFilter,
  InstanceRecord,
  NewRequest,
  StudyRecord,
  TransactionRecord,
} from '../transactions/records.js';
import { LeaseLostError, type Claim, type ClaimRequest, type InstanceOutcome, type Recorded, type TransactionRepository, type VerifiedRecord, type WorkKind } from '../transactions/repository.js';
import type { TransactionStore } from './transaction-store.js';

interface Lease {
  readonly owner: string;
  readonly epoch: number;
  until: number;
}

export class SqliteTransactionRepository implements TransactionRepository {
  readonly engine = 'sqlite';
  private readonly leases = new Map<number, Lease>();
  private epochs = 0;

  constructor(private readonly store: TransactionStore) {}

  async record(input: NewRequest, claimFor?: ClaimRequest): Promise<Recorded> {
    const outcome = this.store.recordRequest(input);
    // Past verification, a re-sent request reopens the report (as on PostgreSQL): any claim on it ends.
    const reopened = outcome.kind !== 'created' && this.store.get(outcome.id)?.state !== 'RECEIVED';
    if (reopened) this.leases.delete(outcome.id);
    if (!claimFor || (outcome.kind !== 'created' && !reopened)) return outcome;
    return { ...outcome, claim: this.take(outcome.id, reopened ? 'deliver' : 'verify', claimFor.owner, input.now, claimFor.ttlMs) };
  }

  async get(id: number): Promise<TransactionRecord | undefined> {
    const record = this.store.get(id);
    return record ? this.withLease(record) : undefined;
  }

  async claimDue(kind: WorkKind, owner: string, now: number, ttlMs: number, limit: number): Promise<Claim[]> {
    if (limit <= 0) return [];
    // Claimed ones are skipped here: ask for enough ids to find `limit` free ones among them.
    const ids = this.store.workIds(kind, now, limit + this.leases.size).filter((id) => this.isFree(id, now));
    return ids.slice(0, limit).map((id) => this.take(id, kind, owner, now, ttlMs));
  }

  async claim(id: number, kind: WorkKind, owner: string, now: number, ttlMs: number): Promise<Claim | undefined> {
    if (!this.isFree(id, now) || this.store.workIds(kind, now, 1, id).length === 0) return undefined;
    return this.take(id, kind, owner, now, ttlMs);
  }

  async workDue(kind: WorkKind, owner: string, now: number, limit: number): Promise<number[]> {
    if (limit <= 0) return [];
    return this.store
      .workIds(kind, now, limit + this.leases.size)
      .filter((id) => this.isFree(id, now) || this.leases.get(id)?.owner === owner)
      .slice(0, limit);
  }

  async releaseOwnedBy(owner: string): Promise<number> {
    let dropped = 0;
    for (const [id, lease] of this.leases) {
      if (lease.owner !== owner) continue;
      this.leases.delete(id);
      dropped++;
    }
    return dropped;
  }

  async pendingReports(callingAeTitle: string, now: number): Promise<number[]> {
    return this.store.pendingReportIds(callingAeTitle, now);
  }

  async renew(claim: Claim, now: number, ttlMs: number): Promise<Claim | undefined> {
    const lease = this.held(claim);
    if (!lease) return undefined;
    lease.until = now + ttlMs;
    return { ...claim, until: lease.until };
  }

  async release(claim: Claim): Promise<void> {
    if (this.held(claim)) this.leases.delete(claim.id);
  }

  async undecidedInstances(id: number, page: { afterSeq: number; limit: number }): Promise<InstanceRecord[]> {
    return this.store.undecidedInstances(id, page);
  }

  async saveOutcomes(claim: Claim, outcomes: readonly InstanceOutcome[]): Promise<void> {
    this.fenced(claim, false, () => this.store.saveOutcomes(claim.id, outcomes));
  }

  async completeVerification(claim: Claim, failures: readonly FailureRecord[], now: number, handOver?: { readonly ttlMs: number }): Promise<VerifiedRecord> {
    const record = this.fenced(claim, true, () => {
      this.store.saveFinalOutcomes(claim.id, failures);
      this.store.completeVerification(claim.id, now);
      return this.store.get(claim.id)!;
    });
    // Synchronous from the fenced write on: nothing can claim it in between.
    if (!handOver) return record;
    const deliverClaim = this.take(claim.id, 'deliver', claim.owner, now, handOver.ttlMs);
    return { ...deliverClaim.record, deliverClaim };
  }

  async verdict(id: number): Promise<Verdict> {
    return this.store.verdict(id);
  }

  async recordDelivery(claim: Claim, attempt: DeliveryAttemptRecord, nextAttemptAt: number | undefined): Promise<TransactionRecord> {
    return this.fenced(claim, true, () => {
      this.store.recordDelivery(claim.id, attempt, nextAttemptAt);
      return this.store.get(claim.id)!;
    });
  }

  async expireOverdue(now: number): Promise<TransactionRecord[]> {
    const expired = this.store.expireOverdue(now);
    for (const record of expired) this.leases.delete(record.id);
    return expired;
  }

  async redeliver(id: number, now: number, ttlMs: number): Promise<TransactionRecord | undefined> {
    const before = this.store.get(id);
    const after = this.store.redeliver(id, now, ttlMs);
    // Reopened (not merely found RECEIVED or VERIFIED): any claim on it ends, as on PostgreSQL.
    if (before && before.state !== 'RECEIVED' && before.state !== 'VERIFIED') this.leases.delete(id);
    return after ? this.withLease(after) : undefined;
  }

  async outcomeCounts(id: number): ReturnType<TransactionRepository['outcomeCounts']> {
    return this.store.outcomeCounts(id);
  }

  async indexForSearch(id: number, afterSeq: number, limit: number): Promise<number | undefined> {
    return this.store.indexForSearch(id, afterSeq, limit);
  }

  async unindexedIds(): Promise<number[]> {
    return this.store.unindexedIds();
  }

  async saveStudies(id: number, studies: readonly StudyRecord[]): Promise<void> {
    this.store.saveStudies(id, studies);
  }

  async instancePage(id: number, page: { outcome: InstanceOutcomeFilter; afterSeq: number; limit: number }): Promise<InstanceRecord[]> {
    return this.store.instancePage(id, page);
  }

  async markProtected(id: number, now: number, vanished: readonly number[]): Promise<void> {
    this.store.markProtected(id, now, vanished);
  }

  async transactionsToWatch(reportedSince: number, limit: number): Promise<Array<{ id: number; afterSeq: number }>> {
    return this.store.transactionsToWatch(reportedSince, limit);
  }

  async committedToWatch(id: number, afterSeq: number, limit: number): Promise<Array<{ seq: number; sopInstanceUid: string }>> {
    return this.store.committedToWatch(id, afterSeq, limit);
  }

  async recordWatch(id: number, vanished: readonly number[], resumeAfterSeq: number | null, now: number): Promise<number> {
    return this.store.recordWatch(id, vanished, resumeAfterSeq, now);
  }

  async purgeFinished(receivedBefore: number): Promise<number> {
    return this.store.purgeFinished(receivedBefore);
  }

  async savePeers(peers: readonly PeerEntry[]): Promise<void> {
    this.store.savePeers(peers);
  }

  async loadPeers(): Promise<PeerEntry[]> {
    return this.store.loadPeers();
  }

  async health(): Promise<{ readonly ok: boolean; readonly reason: string }> {
    return this.store.health();
  }

  async close(): Promise<void> {
    this.store.close();
  }

  private isFree(id: number, now: number): boolean {
    const lease = this.leases.get(id);
    return lease === undefined || lease.until <= now;
  }

  private take(id: number, kind: WorkKind, owner: string, now: number, ttlMs: number): Claim {
    const lease: Lease = { owner, epoch: ++this.epochs, until: now + ttlMs };
    this.leases.set(id, lease);
    return { id, kind, owner, epoch: lease.epoch, until: lease.until, record: this.withLease(this.store.get(id)!) };
  }

  /** The lease of this claim if it is still the one held (same owner and epoch). */
  private held(claim: Claim): Lease | undefined {
    const lease = this.leases.get(claim.id);
    return lease && lease.owner === claim.owner && lease.epoch === claim.epoch ? lease : undefined;
  }

  private withLease(record: TransactionRecord): TransactionRecord {
    const lease = this.leases.get(record.id);
    return lease ? { ...record, leaseOwner: lease.owner, leaseUntil: lease.until } : record;
  }

  /**
   * The write, if the claim is still held (checked and written in one synchronous step: nothing can come
   * between); LeaseLostError when it is not. `release`: the claim ends with it.
   */
  private fenced<T>(claim: Claim, release: boolean, write: () => T): T {
    if (!this.held(claim)) throw new LeaseLostError(claim);
    const value = write();
    if (release) this.leases.delete(claim.id);
    return value;
  }
}
