/**
 * Association acceptance rules (PS3.8 7.1.1.9 reject reasons, PS3.7 D.3.3.4 role selection), as one
 * function over dcmjs-dimse's Association so that scp.ts reads as "decide, then answer".
 */
import { STORAGE_COMMITMENT_SOP_CLASS, VERIFICATION_SOP_CLASS } from '../commitment/types.js';
import { peerMatchesAddress, type Peer, type PeerListStatus } from '../peers/peer-directory.js';
import { EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN } from './dataset-writer.js';
import { constants, type Association } from './dimse.js';

const { RejectResult, RejectSource, RejectReason, PresentationContextResult } = constants;

export interface AcceptancePolicy {
  readonly ourAeTitle: string;
  /** The peer configured for a calling AE title, if any. */
  readonly findPeer: (aeTitle: string) => Peer | undefined;
  /** Refuse a known AE calling from another address than its configured host. */
  readonly checkPeerHost: boolean;
  /** How fresh the peer list is, named when an unknown AE is refused (was it declared after the last refresh?). */
  readonly peerListStatus: () => PeerListStatus;
  /** With exact AE title comparison: a peer's title that differs from the caller's only in case, to name it. */
  readonly caseVariantOf?: (aeTitle: string) => string | undefined;
}

/** A rejection's kind, for metrics (the `why` text names AE titles and addresses). */
export type RejectCode = 'called-ae' | 'calling-ae' | 'calling-host' | 'protocol-version' | 'application-context' | 'association-limit' | 'ae-limit';

export type AssociationDecision =
  | { readonly accept: true; readonly peer: Peer }
  | { readonly accept: false; readonly result: number; readonly source: number; readonly reason: number; readonly why: string; readonly code: RejectCode };

/** Abstract syntaxes we accept (exported for the conformance statement's test). */
export const SUPPORTED_ABSTRACT_SYNTAXES: ReadonlySet<string> = new Set([VERIFICATION_SOP_CLASS, STORAGE_COMMITMENT_SOP_CLASS]);
/** Preference order: explicit VR keeps VRs visible in traces; implicit is the default every peer has. */
export const SUPPORTED_TRANSFER_SYNTAXES: readonly string[] = [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN];

export function decideAssociation(association: Association, remoteAddress: string, policy: AcceptancePolicy): AssociationDecision {
  const called = association.getCalledAeTitle().trim();
  const calling = association.getCallingAeTitle().trim();
  if (called !== policy.ourAeTitle) {
    return { accept: false, result: RejectResult.Permanent, source: RejectSource.ServiceUser, reason: RejectReason.CalledAeNotRecognized, why: `called AE title "${called}" is not ours`, code: 'called-ae' };
  }
  const peer = policy.findPeer(calling);
  if (!peer) {
    const variant = policy.caseVariantOf?.(calling);
    const hint = variant ? `; a peer "${variant}" differs only in case, and STGCMT_STRICT_AET_COMPARISON is on` : '';
    return { accept: false, result: RejectResult.Permanent, source: RejectSource.ServiceUser, reason: RejectReason.CallingAeNotRecognized, why: `calling AE title "${calling}" is not a known peer (${describePeerList(policy.peerListStatus())}${hint})`, code: 'calling-ae' };
  }
  if (policy.checkPeerHost && !peerMatchesAddress(peer, remoteAddress)) {
    return { accept: false, result: RejectResult.Permanent, source: RejectSource.ServiceUser, reason: RejectReason.CallingAeNotRecognized, why: `calling AE title "${calling}" connected from ${remoteAddress}, not from its configured host ${peer.host}`, code: 'calling-host' };
  }
  return { accept: true, peer };
}

/** "3 peers known, list last refreshed 2026-11-25T10:00:00.000Z (12 s ago)". */
export function describePeerList(status: PeerListStatus, now: number = Date.now()): string {
  const known = `${status.known} peer${status.known === 1 ? '' : 's'} known`;
  if (status.refreshedAt === undefined) return `${known}, from the stored list: not refreshed since the start`;
  const age = Math.max(0, Math.round((now - status.refreshedAt) / 1000));
  return `${known}, list last refreshed ${new Date(status.refreshedAt).toISOString()} (${age} s ago)`;
}

/**
 * Sets each proposed presentation context's result. For the Storage Commitment context we answer a role
 * selection item when one was proposed: the requestor may be SCU (it sends N-ACTION); it may not be SCP.
 * Returns the IDs of the accepted contexts.
 */
export function answerPresentationContexts(association: Association): number[] {
  const accepted: number[] = [];
  for (const { context } of association.getPresentationContexts()) {
    const abstractSyntax = context.getAbstractSyntaxUid();
    if (!SUPPORTED_ABSTRACT_SYNTAXES.has(abstractSyntax)) {
      context.setResult(PresentationContextResult.RejectAbstractSyntaxNotSupported);
      continue;
    }
    const transferSyntax = SUPPORTED_TRANSFER_SYNTAXES.find((ts) => context.hasTransferSyntaxUid(ts));
    if (!transferSyntax) {
      context.setResult(PresentationContextResult.RejectTransferSyntaxesNotSupported);
      continue;
    }
    context.setResult(PresentationContextResult.Accept, transferSyntax);
    accepted.push(context.getPresentationContextId());
    const proposedRoles = context.getUserRole() !== undefined || context.getProviderRole() !== undefined;
    if (proposedRoles) context.setProviderRole(false);
  }
  return accepted;
}
