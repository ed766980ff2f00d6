/**
 * The contract with dcmjs-dimse's private parts (see src/dicom/dimse.ts). Every internal the product relies
 * on is exercised here, so that an upgrade that renames or reshapes one fails this test loudly instead of
 * silently degrading the DICOM layer (a renamed patch target once turned a 4 s request into a 15 s one
 * with every other test still green).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { resolve } from 'node:path';
import { describe, it } from 'node:test';
import { encodeCommitmentDataset, IMPLICIT_VR_LITTLE_ENDIAN } from '../../src/dicom/dataset-writer.js';
import {
  association,
  checkInternals,
  clearProposedRoles,
  configureImplementation,
  constants,
  Dataset,
  DEFER_PARSING,
  IMPLEMENTATION_CLASS_UID,
  IMPLEMENTATION_VERSION_NAME,
  installAssociation,
  internals,
  Network,
  rawDatasetBytes,
  responses,
  Scp,
  sendAssociationAccept,
  SUPPORTED_DCMJS_DIMSE_VERSION,
  takeOverReceiving,
  type CEchoRequest,
} from '../../src/dicom/dimse.js';
import { cEchoCommand, pDataTf, STORAGE_COMMITMENT, VERIFICATION } from '../harness/pdus.js';

const ROOT = resolve(import.meta.dirname, '..', '..');

/** An unconnected socket whose writes are captured. */
function capturingSocket(): { socket: Socket; written: Buffer[] } {
  const socket = new Socket();
  const written: Buffer[] = [];
  socket.write = ((chunk: Buffer) => {
    written.push(Buffer.from(chunk));
    return true;
  }) as Socket['write'];
  socket.on('error', () => undefined);
  return { socket, written };
}

const rq = {
  protocolVersion: 1,
  calledAeTitle: 'STGCMT',
  callingAeTitle: 'CT1',
  applicationContext: '1.2.840.10008.3.1.1.1',
  contexts: [
    { id: 5, abstractSyntax: STORAGE_COMMITMENT, transferSyntaxes: [IMPLICIT_VR_LITTLE_ENDIAN], roles: { scu: true, scp: false } },
    { id: 1, abstractSyntax: VERIFICATION, transferSyntaxes: [IMPLICIT_VR_LITTLE_ENDIAN] },
  ],
  maxPduLength: 0,
  implementationClassUid: '1.2.3',
  implementationVersion: 'PEER',
};

describe('dcmjs-dimse contract', () => {
  it('is the exact version pinned in package.json, and every internal is where dimse.ts expects it', () => {
    const pkg = JSON.parse(readFileSync(resolve(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    assert.equal(pkg.dependencies['dcmjs-dimse'], SUPPORTED_DCMJS_DIMSE_VERSION, 'pinned exactly, no range');
    assert.deepEqual(checkInternals(), []);
  });

  it('Network is the prototype of Scp and keeps socket, association, pending, logId, connected', () => {
    assert.equal(Object.getPrototypeOf(Scp), Network);
    const { socket } = capturingSocket();
    const scp = new Scp(socket, {});
    const fields = internals(scp);
    assert.equal(fields.socket, socket);
    assert.ok(Array.isArray(fields.pending));
    assert.equal(typeof fields.logId, 'string');
    assert.equal(fields.connected, false);
    socket.destroy();
  });

  it('deferred parsing keeps the received bytes (the _fromElementsBuffer patch is live); ordinary datasets still parse', () => {
    const bytes = encodeCommitmentDataset({ transactionUid: '1.2.3', retrieveAeTitle: undefined, referenced: [{ sopClassUid: '1.2.4', sopInstanceUid: '1.2.5' }], failed: [] }, IMPLICIT_VR_LITTLE_ENDIAN);
    const deferred = new Dataset(bytes, IMPLICIT_VR_LITTLE_ENDIAN, DEFER_PARSING);
    assert.equal(rawDatasetBytes(deferred), bytes);
    const parsed = new Dataset(bytes, IMPLICIT_VR_LITTLE_ENDIAN);
    assert.equal(rawDatasetBytes(parsed), undefined);
    assert.equal((parsed.getElements() as { TransactionUID?: string }).TransactionUID, '1.2.3');
  });

  it('has exactly one socket data listener to take over, and calls the handler synchronously while reading a PDU', () => {
    const { socket } = capturingSocket();
    let handled = false;
    class Probe extends Scp {
      override cEchoRequest(request: CEchoRequest, callback: (response: InstanceType<typeof responses.CEchoResponse>) => void): void {
        handled = true;
        const response = responses.CEchoResponse.fromRequest(request);
        response.setStatus(0);
        callback(response);
      }
    }
    const probe = new Probe(socket, {});
    const receive = takeOverReceiving(probe);
    assert.equal(socket.listeners('data').length, 0, 'taken over');
    const built = installAssociation(probe, rq);
    built.getPresentationContext(1).setResult(constants.PresentationContextResult.Accept, IMPLICIT_VR_LITTLE_ENDIAN);
    receive(pDataTf(1, 0x03, cEchoCommand(7)));
    assert.ok(handled, 'the C-ECHO handler ran before receive() returned');
    socket.destroy();
  });

  it('installs an association with the proposed IDs in any order, and the A-ASSOCIATE-AC carries our identity and our Maximum Length', () => {
    configureImplementation({ maxPduLength: 262144 });
    const { socket, written } = capturingSocket();
    const scp = new Scp(socket, {});
    const built = installAssociation(scp, rq);
    assert.deepEqual(built.getPresentationContexts().map((c) => c.id).sort(), [1, 5]);
    assert.equal(built.getPresentationContext(5).getAbstractSyntaxUid(), STORAGE_COMMITMENT);
    assert.equal(built.getPresentationContext(5).getUserRole(), true);
    for (const { context } of built.getPresentationContexts()) context.setResult(constants.PresentationContextResult.Accept, IMPLICIT_VR_LITTLE_ENDIAN);
    sendAssociationAccept(scp, 262144);
    const ac = Buffer.concat(written);
    assert.equal(ac.readUInt8(0), 0x02, 'A-ASSOCIATE-AC');
    const items = new Map<number, Buffer[]>();
    for (let offset = 6 + 68; offset + 4 <= ac.length; ) {
      const type = ac.readUInt8(offset);
      const length = ac.readUInt16BE(offset + 2);
      const value = ac.subarray(offset + 4, offset + 4 + length);
      if (type === 0x50) {
        for (let sub = 0; sub + 4 <= value.length; ) {
          const subLength = value.readUInt16BE(sub + 2);
          items.set(value.readUInt8(sub), [...(items.get(value.readUInt8(sub)) ?? []), value.subarray(sub + 4, sub + 4 + subLength)]);
          sub += 4 + subLength;
        }
      } else {
        items.set(type, [...(items.get(type) ?? []), value]);
      }
      offset += 4 + length;
    }
    assert.deepEqual(items.get(0x21)!.map((v) => v.readUInt8(0)).sort(), [1, 5], 'AC answers exactly the proposed IDs');
    assert.equal(items.get(0x51)![0]!.readUInt32BE(0), 262144, 'our Maximum Length, even though the requestor sent 0');
    assert.equal(items.get(0x52)![0]!.toString('latin1').replace(/\0$/, ''), IMPLEMENTATION_CLASS_UID);
    assert.equal(items.get(0x55)![0]!.toString('latin1').trim(), IMPLEMENTATION_VERSION_NAME);
    assert.equal(built.getMaxPduLength(), 0, 'what we send is sized by the requestor\'s limit again');
    socket.destroy();
  });

  it('new associations we request carry our identity; proposed roles can be cleared', () => {
    configureImplementation({ maxPduLength: 262144 });
    const ours = new association.Association('STGCMT', 'CT1');
    assert.equal(ours.getImplementationClassUid(), IMPLEMENTATION_CLASS_UID);
    assert.equal(ours.getImplementationVersion(), IMPLEMENTATION_VERSION_NAME);
    const id = ours.addPresentationContext(STORAGE_COMMITMENT);
    const context = ours.getPresentationContext(id);
    context.setUserRole(false);
    context.setProviderRole(true);
    clearProposedRoles(context);
    assert.equal(context.getUserRole(), undefined);
    assert.equal(context.getProviderRole(), undefined);
    assert.ok(IMPLEMENTATION_VERSION_NAME.length <= 16);
    assert.match(IMPLEMENTATION_CLASS_UID, /^2\.25\.[1-9][0-9]*$/);
  });
});
