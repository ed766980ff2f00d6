/**
 * How a report leaves, as the application layer sees it: a report ready to go, a channel on the
 * modality's own association, a transport that opens a new association (the DICOM shell implements
 * them: dicom/event-report.ts, dicom/scp.ts, dicom/report-sender.ts), and what a failed attempt means.
 */
import type { EventReport } from '../commitment/report.js';
import type { Peer } from '../peers/peer-directory.js';

export class DeliveryError extends Error {}

/**
 * Why a delivery attempt failed, for the retry schedule and the operator: `network` (unreachable, timed
 * out, aborted: wait and retry), `peer-status` (the modality answered the report with an error status),
 * `configuration` (the modality refuses what we ask of it: retrying will not help until someone changes a
 * setting).
 */
export type DeliveryErrorCategory = 'network' | 'configuration' | 'peer-status';

export type ConfigurationErrorKind =
  | 'role-refused'
  | 'role-unanswered-strict'
  | 'context-rejected'
  | 'association-rejected-permanent'
  | 'peer-not-configured';

/** The modality (or our peer list) is set up so that the report cannot go: `fix` says what to change. */
export class DeliveryConfigurationError extends DeliveryError {
  constructor(
    message: string,
    readonly kind: ConfigurationErrorKind,
    readonly fix: string,
  ) {
    super(message);
  }
}

/** The modality took the report and answered it with a failure status. */
export class DeliveryStatusError extends DeliveryError {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

export function deliveryErrorCategory(error: unknown): DeliveryErrorCategory {
  if (error instanceof DeliveryConfigurationError) return 'configuration';
  if (error instanceof DeliveryStatusError) return 'peer-status';
  return 'network';
}

/**
 * A report ready to go. Its size is known up front; its content is built and encoded only once the
 * transfer syntax is known, right before it is written, so that the references of a 200,000-instance
 * report are not held in memory while an association is opened or a modality is slow to answer.
 */
export interface OutgoingReport {
  /** Instances the report lists (committed and failed). */
  readonly instanceCount: number;
  encode(transferSyntaxUid: string): { readonly eventTypeId: number; readonly bytes: Buffer };
  /**
   * Awaited on a new association once it is established, right before the report is written: rejecting
   * aborts the association and sends nothing (a node that lost its claim on the transaction meanwhile).
   */
  beforeSend?: () => Promise<void>;
}

/** Status classes of PS3.7 C: Success and Warning both mean the peer took the report. */
export function isDeliveredStatus(status: number): boolean {
  return status === 0x0000 || status === 0x0001 || (status & 0xf000) === 0xb000;
}

export interface ReportChannel {
  /**
   * Whether the association is still open once the requestor had its chance to release it: an SCU that
   * means to release does so right after the N-ACTION-RSP (Orthanc: within a millisecond), and a report
   * sent then would cross its A-RELEASE-RQ. Waits out RELEASE_GRACE_MS after the response if needed.
   * Answering false also tells the association that it no longer waits for this report.
   */
  stillOpen(): Promise<boolean>;
  /**
   * The association is established right now (no waiting, no side effect). Once false, it stays false:
   * nothing more is sent on it, and a report queued on it gives up at once.
   */
  isOpen(): boolean;
  /** Sends the report and resolves with the response status (timeout grows with the report's size). */
  send(report: OutgoingReport, baseTimeoutMs: number): Promise<number>;
  /**
   * This report will not go on this association (another node delivers it, or it is finished): the
   * association stops waiting for it, so that its idle timeout applies again.
   */
  release(): void;
}

/** Opens associations to modalities for reports, and makes reports ready to go (the DICOM shell). */
export interface ReportTransport {
  /** A report whose content `build` makes only when it is written (encoding is the shell's business). */
  prepare(instanceCount: number, build: () => EventReport): OutgoingReport;
  /**
   * Opens an association to the peer as `callingAeTitle`, proposing the SCP role (PS3.4 J, PS3.7 role
   * selection), sends the report and resolves once the peer answered it with a delivered status; rejects
   * with a DeliveryError (a DeliveryConfigurationError when a setting must change) otherwise.
   */
  sendOnNewAssociation(peer: Peer, callingAeTitle: string, report: OutgoingReport): Promise<unknown>;
}
