/**
 * N-EVENT-REPORT delivery on a new association that we open to the modality (PS3.4 J.3.3): we stay the
 * SCP of Storage Commitment while being the association requestor, so we propose SCP/SCU Role Selection
 * with SCU-role 0 and SCP-role 1 (PS3.7 D.3.3.4).
 */
import type { ConnectionOptions } from 'node:tls';
import type { EventReport } from '../commitment/report.js';
import { STORAGE_COMMITMENT_SOP_CLASS, hex16 } from '../commitment/types.js';
import type { Peer } from '../peers/peer-directory.js';
import { EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN } from './dataset-writer.js';
import { DeliveryError, isDeliveredStatus, responseTimeoutFor, sendEventReport } from './event-report.js';
import { openAssociation } from './requestor.js';

export interface ReportSenderOptions {
  readonly timeoutMs: number;
  /**
   * When true, an acceptor that answers no role selection item is treated as refusing our SCP role.
   * When false (default), such a report is still sent: many SCUs (Orthanc among them) accept the
   * context without echoing the item, and PS3.4 does not let a missing answer block delivery forever.
   * An explicit refusal (SCP-role 0) always fails the attempt.
   */
  readonly strictRoleSelection: boolean;
  readonly tls: ConnectionOptions | undefined;
}

export interface NewAssociationDelivery {
  /** What the acceptor said to our role proposal: granted, refused, or silent (no item). */
  readonly roleAnswer: 'granted' | 'silent';
}

/**
 * Delivers the report to the peer's configured host and port, calling it from `callingAeTitle` (the AE
 * title the modality addressed its request to). Resolves when the peer answered with a success or warning
 * status; rejects with DeliveryError otherwise.
 */
export async function sendReportOnNewAssociation(
  peer: Peer,
  callingAeTitle: string,
  report: EventReport,
  options: ReportSenderOptions,
): Promise<NewAssociationDelivery> {
  let open;
  try {
    open = await openAssociation({
      host: peer.host,
      port: peer.port,
      callingAeTitle,
      calledAeTitle: peer.aeTitle,
      timeoutMs: options.timeoutMs,
      idleTimeoutMs: responseTimeoutFor(report, options.timeoutMs),
      tls: peer.tls ? (options.tls ?? {}) : undefined,
      contexts: [
        {
          abstractSyntax: STORAGE_COMMITMENT_SOP_CLASS,
          transferSyntaxes: [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN],
          roles: { scu: false, scp: true },
        },
      ],
    });
  } catch (error) {
    // Refused, rejected, aborted, unreachable or timed out: all are reasons to retry later.
    throw new DeliveryError(`${peer.aeTitle}@${peer.host}:${peer.port}: ${(error as Error).message}`);
  }

  try {
    const roles = open.grantedRoles(STORAGE_COMMITMENT_SOP_CLASS);
    if (roles && !roles.scp) throw new DeliveryError(`${peer.aeTitle} refused our SCP role for Storage Commitment`);
    if (!roles && options.strictRoleSelection) throw new DeliveryError(`${peer.aeTitle} did not answer our role selection (strict mode)`);
    const status = await sendEventReport(open.network, report, options.timeoutMs);
    if (!isDeliveredStatus(status)) {
      throw new DeliveryError(`${peer.aeTitle} answered the N-EVENT-REPORT with status ${hex16(status)}`);
    }
    // Delivered the moment the response arrived; a peer slow to release must not delay the record.
    void open.release(options.timeoutMs);
    return { roleAnswer: roles ? 'granted' : 'silent' };
  } catch (error) {
    open.abort();
    throw error instanceof DeliveryError ? error : new DeliveryError((error as Error).message);
  }
}
