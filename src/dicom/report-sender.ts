/**
 * N-EVENT-REPORT delivery on a new association that we open to the modality (PS3.4 J.3.3): we stay the
 * SCP of Storage Commitment while being the association requestor, so we propose SCP/SCU Role Selection
 * with SCU-role 0 and SCP-role 1 (PS3.7 D.3.3.4).
 */
import type { ConnectionOptions } from 'node:tls';
import { STORAGE_COMMITMENT_SOP_CLASS, hex16 } from '../commitment/types.js';
import type { Peer } from '../peers/peer-directory.js';
import { EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN } from './dataset-writer.js';
import { constants } from './dimse.js';
import {
  acceptedCommitmentTransferSyntax,
  DeliveryConfigurationError,
  DeliveryError,
  DeliveryStatusError,
  isDeliveredStatus,
  responseTimeoutFor,
  sendEventReport,
  type OutgoingReport,
} from './event-report.js';
import { AssociationRejectedError, openAssociation, type ProposedContext } from './requestor.js';

/**
 * The one presentation context a report association proposes: we stay the Storage Commitment SCP while
 * being the requestor (exported for the conformance statement's test).
 */
export const REPORT_PRESENTATION_CONTEXT: ProposedContext = {
  abstractSyntax: STORAGE_COMMITMENT_SOP_CLASS,
  transferSyntaxes: [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN],
  roles: { scu: false, scp: true },
};

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
  report: OutgoingReport,
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
      contexts: [REPORT_PRESENTATION_CONTEXT],
    });
  } catch (error) {
    // Refused, aborted, unreachable or timed out: reasons to retry later. A permanent rejection of an AE
    // title is a configuration problem: retried too, but slowly and reported as such.
    const message = `${peer.aeTitle}@${peer.host}:${peer.port}: ${(error as Error).message}`;
    throw (error instanceof AssociationRejectedError && rejectionAsConfigurationError(error, message, peer, callingAeTitle)) || new DeliveryError(message);
  }

  try {
    // A context or role the modality refuses will be refused again at every retry until it is reconfigured.
    if (acceptedCommitmentTransferSyntax(open.network) === undefined) {
      throw new DeliveryConfigurationError(
        `${peer.aeTitle} rejected the Storage Commitment presentation context`,
        'context-rejected',
        `configure ${peer.aeTitle} to accept the Storage Commitment Push Model SOP Class (${STORAGE_COMMITMENT_SOP_CLASS}) from AE ${callingAeTitle}, with us as SCP on its associations (SCP/SCU role selection)`,
      );
    }
    const roles = open.grantedRoles(STORAGE_COMMITMENT_SOP_CLASS);
    const roleFix = `configure ${peer.aeTitle} to accept the Storage Commitment SOP Class as SCU with role selection (us as SCP) from AE ${callingAeTitle}`;
    if (roles && !roles.scp) throw new DeliveryConfigurationError(`${peer.aeTitle} refused our SCP role for Storage Commitment`, 'role-refused', roleFix);
    if (!roles && options.strictRoleSelection) {
      throw new DeliveryConfigurationError(
        `${peer.aeTitle} did not answer our role selection (strict mode)`,
        'role-unanswered-strict',
        `${roleFix}, or set STGCMT_STRICT_ROLE_SELECTION=false to send reports to modalities that accept the context without answering the role item`,
      );
    }
    // The last moment to say no: negotiation may have taken long (a slow or paused peer).
    if (report.beforeSend) await report.beforeSend();
    const status = await sendEventReport(open.network, report, options.timeoutMs);
    if (!isDeliveredStatus(status)) {
      throw new DeliveryStatusError(`${peer.aeTitle} answered the N-EVENT-REPORT with status ${hex16(status)}`, status);
    }
    // Delivered the moment the response arrived; a peer slow to release must not delay the record.
    void open.release(options.timeoutMs);
    return { roleAnswer: roles ? 'granted' : 'silent' };
  } catch (error) {
    open.abort();
    throw error instanceof DeliveryError ? error : new DeliveryError((error as Error).message);
  }
}

const { RejectResult, RejectSource, RejectReason } = constants;

/** A permanent rejection of an AE title (A-ASSOCIATE-RJ result 1, source 1, reason 3 or 7; PS3.8 9.3.4): the modality does not know us, or not under the name we call it. */
function rejectionAsConfigurationError(error: AssociationRejectedError, message: string, peer: Peer, callingAeTitle: string): DeliveryConfigurationError | undefined {
  if (error.result !== RejectResult.Permanent || error.source !== RejectSource.ServiceUser) return undefined;
  if (error.reason === RejectReason.CallingAeNotRecognized) {
    const at = error.localAddress ? ` at ${error.localAddress.replace(/^::ffff:/, '')}` : '';
    return new DeliveryConfigurationError(`${message}: calling AE title ${callingAeTitle} not recognized`, 'association-rejected-permanent', `declare AE ${callingAeTitle}${at} on ${peer.aeTitle} (as a Storage Commitment SCP it accepts associations from)`);
  }
  if (error.reason === RejectReason.CalledAeNotRecognized) {
    return new DeliveryConfigurationError(
      `${message}: called AE title ${peer.aeTitle} not recognized`,
      'association-rejected-permanent',
      `correct the AE title of the modality at ${peer.host}:${peer.port} (now ${peer.aeTitle}) in Orthanc's DicomModalities or the STGCMT_PEERS_FILE`,
    );
  }
  return undefined;
}
