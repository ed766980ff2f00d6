/**
 * Association acceptance: who is refused, and a refusal's log text names what an operator needs to act on.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decideAssociation, describePeerList, type AcceptancePolicy } from '../../src/dicom/negotiation.js';
import { association } from '../../src/dicom/dimse.js';
import type { Peer, PeerListStatus } from '../../src/peers/peer-directory.js';

const CT1: Peer = { aeTitle: 'CT1', host: '192.0.2.10', port: 104, tls: false, callback: true, source: 'orthanc', addresses: ['192.0.2.10'] };

function policy(status: PeerListStatus, peers: readonly Peer[] = [CT1]): AcceptancePolicy {
  return { ourAeTitle: 'STGCMT', findPeer: (aeTitle) => peers.find((p) => p.aeTitle === aeTitle), checkPeerHost: true, peerListStatus: () => status };
}

describe('decideAssociation', () => {
  it('refuses an unknown calling AE naming when the peer list was last refreshed', () => {
    const refreshedAt = Date.now() - 42_000;
    const decision = decideAssociation(new association.Association('MR9', 'STGCMT'), '192.0.2.99', policy({ known: 1, refreshedAt }));
    assert.equal(decision.accept, false);
    assert.ok(!decision.accept);
    assert.equal(decision.code, 'calling-ae');
    assert.match(decision.why, new RegExp(`^calling AE title "MR9" is not a known peer \\(1 peer known, list last refreshed ${new Date(refreshedAt).toISOString().replace(/\./g, '\\.')} \\(4[123] s ago\\)\\)$`));
  });

  it('says when the list in force is the stored one, not yet refreshed', () => {
    const decision = decideAssociation(new association.Association('MR9', 'STGCMT'), '192.0.2.99', policy({ known: 0, refreshedAt: undefined }, []));
    assert.ok(!decision.accept);
    assert.match(decision.why, /not a known peer \(0 peers known, from the stored list: not refreshed since the start\)$/);
  });

  it('accepts a known peer from its host', () => {
    const decision = decideAssociation(new association.Association('CT1', 'STGCMT'), '192.0.2.10', policy({ known: 1, refreshedAt: Date.now() }));
    assert.ok(decision.accept);
    assert.equal(decision.peer.aeTitle, 'CT1');
  });
});

describe('describePeerList', () => {
  it('counts peers and gives the refresh time and age', () => {
    assert.equal(describePeerList({ known: 3, refreshedAt: Date.UTC(2026, 10, 25, 10, 0, 0) }, Date.UTC(2026, 10, 25, 10, 0, 12)), '3 peers known, list last refreshed 2026-11-25T10:00:00.000Z (12 s ago)');
  });
});
