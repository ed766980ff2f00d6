/**
 * Where transactions are kept, as the application layer needs it: one interface, two implementations
 * (store/sqlite for a single node, store/postgres for several nodes on one database), one contract test
 * suite run against both (test/contract/transaction-repository.contract.ts).
 *
 * Work is claimed with leases. A node claims a transaction before it verifies it or delivers its report;
 * the claim lasts `ttlMs` unless renewed. A node that dies loses its claims when they expire, and another
 * node claims the work. Every claim takes a new `epoch` (a fencing token): a write made under an older
 * claim is refused with LeaseLostError, so a node that stalled and came back cannot overwrite the work
 * of the node that took over, nor deliver a report it no longer owns (it renews, and fails, first).
 */
import type { FailureReasonCode, Verdict } from '../commitment/types.js';
import type { PeerEntry } from '../peers/peer-directory.js';
import type { DeliveryAttemptRecord, FailureRecord, InstanceOutcomeFilter, InstanceRecord, NewRequest, RecordOutcome, StudyRecord, TransactionRecord } from './records.js';

/**
 * What a claim is for. `verify`: a RECEIVED transaction. `deliver`: a VERIFIED one, or a DELIVERY_RETRY
 * one whose next attempt is due. `owed`: any report not yet delivered (VERIFIED or DELIVERY_RETRY, due
 * or not), for an association the modality opened: it may carry a report before its planned retry.
 */
export type WorkKind = 'verify' | 'deliver' | 'owed';

/** A node's exclusive, time-limited right to work on one transaction. */
export interface Claim {
  readonly id: number;
  readonly kind: WorkKind;
  /** The node holding it (STGCMT_NODE_ID). */
  readonly owner: string;
  /** Grows with every claim of this transaction: writes under an older epoch are refused. */
  readonly epoch: number;
  /** Until when it holds, in ms since the epoch, unless renewed. */
  readonly until: number;
  /** The transaction as it was when claimed (saves a read). */
  readonly record: TransactionRecord;
}

/** A write under a claim that another node has since taken over (or that was released). */
export class LeaseLostError extends Error {
  constructor(readonly claim: Pick<Claim, 'id' | 'owner' | 'epoch'>) {
    super(`transaction ${claim.id}: the claim of ${claim.owner} (epoch ${claim.epoch}) is no longer held`);
    this.name = 'LeaseLostError';
  }
}

/** The node recording a request, to claim the work the record makes for itself (see record). */
export interface ClaimRequest {
  readonly owner: string;
  readonly ttlMs: number;
}

/** What record did, with the claim it took when one was asked for and there was work to claim. */
export type Recorded = RecordOutcome & { readonly claim?: Claim };

/** A transaction just verified, with the claim on its delivery when one was handed over. */
export type VerifiedRecord = TransactionRecord & { readonly deliverClaim?: Claim };

/** A final judgement on one instance, saved as verification goes. */
export type InstanceOutcome = { readonly seq: number; readonly outcome: 'committed' } | ({ readonly outcome: 'failed' } & FailureRecord);

export interface TransactionRepository {
  /** 'sqlite' or 'postgres', for logs and /readyz. */
  readonly engine: string;

  /**
   * Durably records an N-ACTION; when the promise resolves, the request survives a crash. The same
   * (calling AE, Transaction UID) twice is one transaction, decided by a unique constraint (never a
   * check-then-insert race between nodes): same instances `repeated`, others `conflicting` (0131H).
   *
   * With `claimFor`, the work the record makes is claimed for that node in the same step: a new request's
   * verification, or the delivery of a report that a re-sent request reopened. Otherwise another node's
   * periodic pass could take it between the N-ACTION-RSP and the recording node's own start, and that
   * node cannot send the report on the modality's association, which only the recording node holds.
   */
  record(input: NewRequest, claimFor?: ClaimRequest): Promise<Recorded>;

  get(id: number): Promise<TransactionRecord | undefined>;

  /**
   * Claims up to `limit` transactions with work of this kind and no live claim (another node's expired
   * claim counts as none), oldest first, without waiting for rows other nodes are claiming at this moment.
   */
  claimDue(kind: WorkKind, owner: string, now: number, ttlMs: number, limit: number): Promise<Claim[]>;

  /** Claims this transaction if it has work of this kind and no live claim of another node. */
  claim(id: number, kind: WorkKind, owner: string, now: number, ttlMs: number): Promise<Claim | undefined>;

  /**
   * Ids of transactions with work of this kind and no live claim of another node (this node's own claims
   * count as free), oldest first, at most `limit`: what a pass of the periodic job looks at.
   */
  workDue(kind: WorkKind, owner: string, now: number, limit: number): Promise<number[]>;

  /**
   * Drops every claim held under this owner: at start, the claims of this node's previous run, which died
   * with it (a node ID names one running process; two processes must never share one).
   */
  releaseOwnedBy(owner: string): Promise<number>;

  /** Reports still owed to this calling AE (VERIFIED or DELIVERY_RETRY, not expired), oldest request first. */
  pendingReports(callingAeTitle: string, now: number): Promise<number[]>;

  /** Extends a claim still held; undefined when it was lost (another node claimed it, or it was released). */
  renew(claim: Claim, now: number, ttlMs: number): Promise<Claim | undefined>;

  /** Gives a claim up (work done, or handed back); a claim no longer held is left alone. */
  release(claim: Claim): Promise<void>;

  /** Instances without an outcome, in request order, a page at a time (afterSeq: the last seq seen). */
  undecidedInstances(id: number, page: { afterSeq: number; limit: number }): Promise<InstanceRecord[]>;

  /** Saves judgements under a claim (instances already decided keep their outcome). */
  saveOutcomes(claim: Claim, outcomes: readonly InstanceOutcome[]): Promise<void>;

  /**
   * Ends a verification under a `verify` claim: every instance still undecided is committed, the failures
   * given are saved first; RECEIVED -> VERIFIED; the claim is released. Returns the new record.
   * `handOver`: in the same transaction, the same owner claims the delivery (a new epoch, `deliverClaim`):
   * the node that holds the modality's association keeps its report, no other node's pass can slip in.
   */
  completeVerification(claim: Claim, failures: readonly FailureRecord[], now: number, handOver?: { readonly ttlMs: number }): Promise<VerifiedRecord>;

  /** Committed and failed instances, in request order (a transaction past verification). */
  verdict(id: number): Promise<Verdict>;

  /**
   * Records one delivery attempt under a `deliver` claim: REPORTED, or DELIVERY_RETRY at nextAttemptAt;
   * the claim is released. Returns the new record.
   */
  recordDelivery(claim: Claim, attempt: DeliveryAttemptRecord, nextAttemptAt: number | undefined): Promise<TransactionRecord>;

  /** Reports not delivered within their lifetime become EXPIRED (whoever holds them); returned for logging. */
  expireOverdue(now: number): Promise<TransactionRecord[]>;

  /** "Send it again" (operator, or the modality re-sent the request): back to VERIFIED, lifetime extended. */
  redeliver(id: number, now: number, ttlMs: number): Promise<TransactionRecord | undefined>;

  /** How many instances ended committed, and failed per reason (for metrics). */
  outcomeCounts(id: number): Promise<Array<{ outcome: 'committed' | 'failed'; failureReason: FailureReasonCode | null; count: number }>>;

  // Beside the lifecycle: search, studies, protection, the watch over committed instances, housekeeping.

  /**
   * Makes a transaction's images findable by SOP Instance UID, `limit` at a time from seq > afterSeq;
   * the last seq done, or undefined when the transaction is done (then marked so).
   */
  indexForSearch(id: number, afterSeq: number, limit: number): Promise<number | undefined>;

  /** Transactions whose images are not all in the search index yet (a stop cut the indexing short). */
  unindexedIds(): Promise<number[]>;

  /** Replaces a transaction's studies (read from Orthanc after its verdict). */
  saveStudies(id: number, studies: readonly StudyRecord[]): Promise<void>;

  /** Instances with seq > afterSeq matching the filter, in request order, at most `limit`. */
  instancePage(id: number, page: { outcome: InstanceOutcomeFilter; afterSeq: number; limit: number }): Promise<InstanceRecord[]>;

  /**
   * What a VERIFIED report commits was protected in Orthanc at `now`; `vanished` (seqs): committed
   * instances found gone meanwhile, which then fail with 0112H (the report has not gone out yet).
   */
  markProtected(id: number, now: number, vanished: readonly number[]): Promise<void>;

  /** Reported transactions whose committed instances the watch should look at next (see the SQLite store). */
  transactionsToWatch(reportedSince: number, limit: number): Promise<Array<{ id: number; afterSeq: number }>>;

  /** Committed instances not yet found missing, seq > afterSeq, at most `limit`. */
  committedToWatch(id: number, afterSeq: number, limit: number): Promise<Array<{ seq: number; sopInstanceUid: string }>>;

  /** Records a watch step: instances found gone (seqs), and where the pass resumes (null: pass complete). */
  recordWatch(id: number, vanished: readonly number[], resumeAfterSeq: number | null, now: number): Promise<number>;

  /** Deletes finished (REPORTED, EXPIRED) transactions received before the cutoff; how many. */
  purgeFinished(receivedBefore: number): Promise<number>;

  /** The last peer list that loaded, kept so that a start while Orthanc is down still knows where reports go. */
  savePeers(peers: readonly PeerEntry[]): Promise<void>;
  loadPeers(): Promise<PeerEntry[]>;

  /** Whether the repository can take writes now, and why not (for /readyz). */
  health(): Promise<{ readonly ok: boolean; readonly reason: string }>;

  close(): Promise<void>;
}
