/**
 * What the DICOM shell hands the application layer when an N-ACTION arrives, and what it gets back: the
 * interface the N-ACTION handler (dicom/scp.ts) calls, owned here so that the application layer imports
 * nothing from the shell.
 */
import type { CommitmentRequest, DimseStatusCode } from '../commitment/types.js';
import type { Peer } from '../peers/peer-directory.js';
import type { ReportChannel } from './report-transport.js';

export type { ReportChannel } from './report-transport.js';

export interface RequestOrigin {
  readonly callingAeTitle: string;
  readonly calledAeTitle: string;
  readonly remoteAddress: string;
  readonly peer: Peer;
  readonly channel: ReportChannel;
}

export interface IntakeAnswer {
  readonly status: DimseStatusCode;
  readonly comment?: string;
  /** Runs right after the N-ACTION-RSP is written: verification starts only then. */
  readonly afterResponse?: () => void;
}

/**
 * A known peer's new association that can carry Storage Commitment reports (a Storage Commitment context
 * was accepted): the way for reports still owed to that modality, which may not be reachable otherwise.
 */
export interface ModalityAssociation {
  readonly peer: Peer;
  /**
   * Sends on this association, one report at a time (the caller waits for each answer): `stillOpen()`
   * waits until the association has been quiet for RELEASE_GRACE_MS (no request arriving or just
   * answered), so a requestor's own first request is answered before any report reaches it.
   */
  readonly channel: ReportChannel;
  /**
   * Must be called once the owed reports are sent or given up: until then, reports of N-ACTIONs made on
   * this association wait behind them (oldest first).
   */
  done(): void;
}

/** Durably records a valid request and says what to answer (the promise resolves once it is recorded). */
export interface CommitmentIntake {
  receive(request: CommitmentRequest, origin: RequestOrigin): Promise<IntakeAnswer>;
  /** A known peer opened an association that can carry reports; `association.done()` must follow. */
  associationOpened?(association: ModalityAssociation): void;
}

