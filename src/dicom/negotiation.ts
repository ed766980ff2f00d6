/**
 * Association acceptance rules (PS3.8 7.1.1.9 reject reasons, PS3.7 D.3.3.4 role selection), as one
 * function over dcmjs-dimse's Association so that scp.ts reads as "decide, then answer".
 */
import { STORAGE_COMMITMENT_SOP_CLASS, VERIFICATION_SOP_CLASS } from '../commitment/types.js';
import { peerMatchesAddress, type Peer } from '../peers/peer-directory.js';
import { EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN } from './dataset-writer.js';
import { constants, type Association } from './dimse.js';

const { RejectResult, RejectSource, RejectReason, PresentationContextResult } = constants;

export interface AcceptancePolicy {
  readonly ourAeTitle: string;
  /** The peer configured for a calling AE title, if any. */
  readonly findPeer: (aeTitle: string) => Peer | undefined;
  /** Refuse a known AE calling from another address than its configured host. */
  readonly checkPeerHost: boolean;
  /** True when accepting one more association would exceed STGCMT_MAX_ASSOCIATIONS. */
  readonly overCapacity: boolean;
}

export type AssociationDecision =
  | { readonly accept: true; readonly peer: Peer }
  | { readonly accept: false; readonly result: number; readonly source: number; readonly reason: number; readonly why: string };

const SUPPORTED_ABSTRACT_SYNTAXES = new Set([VERIFICATION_SOP_CLASS, STORAGE_COMMITMENT_SOP_CLASS]);
/** Preference order: explicit VR keeps VRs visible in traces; implicit is the default every peer has. */
const SUPPORTED_TRANSFER_SYNTAXES = [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN];

export function decideAssociation(association: Association, remoteAddress: string, policy: AcceptancePolicy): AssociationDecision {
  const called = association.getCalledAeTitle().trim();
  const calling = association.getCallingAeTitle().trim();
  if (policy.overCapacity) {
    return { accept: false, result: RejectResult.Transient, source: RejectSource.ServiceProviderPresentation, reason: RejectReason.LocalLimitExceeded, why: 'too many open associations' };
  }
  if (called !== policy.ourAeTitle) {
    return { accept: false, result: RejectResult.Permanent, source: RejectSource.ServiceUser, reason: RejectReason.CalledAeNotRecognized, why: `called AE title "${called}" is not ours` };
  }
  const peer = policy.findPeer(calling);
  if (!peer) {
    return { accept: false, result: RejectResult.Permanent, source: RejectSource.ServiceUser, reason: RejectReason.CallingAeNotRecognized, why: `calling AE title "${calling}" is not a known peer` };
  }
  if (policy.checkPeerHost && !peerMatchesAddress(peer, remoteAddress)) {
    return { accept: false, result: RejectResult.Permanent, source: RejectSource.ServiceUser, reason: RejectReason.CallingAeNotRecognized, why: `calling AE title "${calling}" connected from ${remoteAddress}, not from its configured host ${peer.host}` };
  }
  return { accept: true, peer };
}

/**
 * Sets each proposed presentation context's result. For the Storage Commitment context we answer a role
 * selection item when one was proposed: the requestor may be SCU (it sends N-ACTION); it may not be SCP.
 * Returns how many contexts were accepted.
 */
export function answerPresentationContexts(association: Association): number {
  let accepted = 0;
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
    accepted++;
    const proposedRoles = context.getUserRole() !== undefined || context.getProviderRole() !== undefined;
    if (proposedRoles) context.setProviderRole(false);
  }
  return accepted;
}
