/**
 * The DICOM Conformance Statement (docs/conformance-statement.md) is what integrators read before they
 * connect a modality: a value in it that drifted from the code is a wrong promise to a hospital. Each
 * table marked `<!-- table: name -->` is compared here with what the code uses, and so is every
 * "`SETTING` (default `value`)" in its text.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import {
  DimseStatus,
  FailureReason,
  STORAGE_COMMITMENT_SOP_CLASS,
  STORAGE_COMMITMENT_SOP_INSTANCE,
  VERIFICATION_SOP_CLASS,
} from '../../src/commitment/types.js';
import { settings } from '../../src/config.js';
import { DICOM_APPLICATION_CONTEXT } from '../../src/dicom/associate-rq.js';
import { EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN } from '../../src/dicom/dataset-writer.js';
import { association, constants, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME } from '../../src/dicom/dimse.js';
import { isDeliveredStatus } from '../../src/dicom/event-report.js';
import { answerPresentationContexts, decideAssociation, SUPPORTED_ABSTRACT_SYNTAXES, SUPPORTED_TRANSFER_SYNTAXES } from '../../src/dicom/negotiation.js';
import { REPORT_PRESENTATION_CONTEXT } from '../../src/dicom/report-sender.js';
import type { Peer } from '../../src/peers/peer-directory.js';
import { POLICY_NAMES } from '../../src/transactions/verification-policy.js';
import { CATCHES, FAULTS } from '../harness/policy-faults.js';

const root = resolve(import.meta.dirname, '..', '..');
const doc = readFileSync(join(root, 'docs', 'conformance-statement.md'), 'utf8');
const lines = doc.split('\n');

function cells(line: string): string[] {
  return line.trim().replace(/^\|/, '').replace(/\|$/, '').split('|').map((cell) => cell.trim());
}

/** The body rows of the table right after `<!-- table: name -->` (header and separator left out). */
function table(name: string): string[][] {
  const at = lines.findIndex((line) => line.trim() === `<!-- table: ${name} -->`);
  assert.ok(at >= 0, `docs/conformance-statement.md has no table marked "${name}"`);
  const rows: string[][] = [];
  for (let i = at + 1; i < lines.length && lines[i]!.startsWith('|'); i++) rows.push(cells(lines[i]!));
  assert.ok(rows.length >= 3, `table "${name}" has no rows`);
  return rows.slice(2);
}

/** The `code` spans of a cell, in order. */
function spans(cell: string): string[] {
  return [...cell.matchAll(/`([^`]+)`/g)].map((match) => match[1]!);
}

/** "0110H" -> 0x0110. */
function hexCode(text: string): number {
  const match = /^([0-9A-F]{4})H$/.exec(text);
  assert.ok(match, `"${text}" is not a status code written as 0000H`);
  return parseInt(match[1]!, 16);
}

/** The leading number of a cell such as "7 (called-AE-title-not-recognized)". */
function leadingNumber(cell: string): number {
  const match = /^(\d+)\b/.exec(cell);
  assert.ok(match, `"${cell}" does not start with a number`);
  return Number(match[1]);
}

function sourceFiles(): Array<{ path: string; text: string }> {
  const dir = join(root, 'src');
  return (readdirSync(dir, { recursive: true }) as string[])
    .filter((path) => path.endsWith('.ts'))
    .map((path) => ({ path, text: readFileSync(join(dir, path), 'utf8') }));
}

/** Names used as `object.Name` in src/, outside the module that defines them. */
function membersUsed(object: string, definedIn: string): Set<string> {
  const used = new Set<string>();
  for (const { path, text } of sourceFiles()) {
    if (path === definedIn) continue;
    for (const match of text.matchAll(new RegExp(`\\b${object}\\.(\\w+)`, 'g'))) used.add(match[1]!);
  }
  return used;
}

const settingByEnv = new Map<string, { default: unknown }>(Object.values(settings).map((setting) => [setting.env, setting]));

/** A default as the document writes it: the value in a code span, or "unset". */
function documentedDefault(value: unknown): string {
  return value === undefined ? 'unset' : String(value);
}

const hex = (code: number): string => `${code.toString(16).toUpperCase().padStart(4, '0')}H`;

describe('DICOM Conformance Statement matches the code', () => {
  it('SOP Classes provided: the abstract syntaxes the SCP accepts', () => {
    const provided = table('sop-classes')
      .filter((row) => row[3] === 'Yes')
      .map((row) => spans(row[1]!)[0]);
    assert.deepEqual(new Set(provided), new Set(SUPPORTED_ABSTRACT_SYNTAXES));
  });

  it('Implementation Class UID and Version Name are the ones dimse.ts sends', () => {
    const rows = Object.fromEntries(table('implementation-identification').map((row) => [row[0], spans(row[1]!)[0]]));
    assert.deepEqual(rows, { 'Implementation Class UID': IMPLEMENTATION_CLASS_UID, 'Implementation Version Name': IMPLEMENTATION_VERSION_NAME });
  });

  it('UIDs listed are the constants the code uses', () => {
    const rows = Object.fromEntries(table('uids').map((row) => [row[0], spans(row[1]!)[0]]));
    assert.deepEqual(rows, {
      'Verification SOP Class': VERIFICATION_SOP_CLASS,
      'Storage Commitment Push Model SOP Class': STORAGE_COMMITMENT_SOP_CLASS,
      'Storage Commitment Push Model SOP Instance': STORAGE_COMMITMENT_SOP_INSTANCE,
      'DICOM Application Context Name': DICOM_APPLICATION_CONTEXT,
      'Implicit VR Little Endian': IMPLICIT_VR_LITTLE_ENDIAN,
      'Explicit VR Little Endian': EXPLICIT_VR_LITTLE_ENDIAN,
      'Implementation Class UID': IMPLEMENTATION_CLASS_UID,
    });
  });

  it('accepted presentation contexts: abstract syntaxes and transfer syntaxes in the preference order negotiation.ts applies', () => {
    const rows = table('accepted-presentation-contexts');
    assert.deepEqual(new Set(rows.map((row) => spans(row[1]!)[0])), new Set(SUPPORTED_ABSTRACT_SYNTAXES));
    for (const row of rows) {
      assert.deepEqual(spans(row[2]!), [...SUPPORTED_TRANSFER_SYNTAXES], `transfer syntaxes of ${row[0]}`);
      assert.equal(row[3], 'SCP');
    }

    // And the negotiation does what the table and the text say: our preference wins over the requestor's
    // order, a proposed SCP role is refused, unsupported syntaxes are rejected.
    const preferred = spans(rows[0]![2]!)[0]!;
    const rq = new association.Association('CT1', 'STGCMT');
    const commitment = rq.addPresentationContext(STORAGE_COMMITMENT_SOP_CLASS, 1);
    for (const ts of [...SUPPORTED_TRANSFER_SYNTAXES].reverse()) rq.addTransferSyntaxToPresentationContext(commitment, ts);
    rq.getPresentationContext(commitment).setUserRole(true);
    rq.getPresentationContext(commitment).setProviderRole(true);
    const ctStorage = rq.addPresentationContext('1.2.840.10008.5.1.4.1.1.2', 3);
    rq.addTransferSyntaxToPresentationContext(ctStorage, IMPLICIT_VR_LITTLE_ENDIAN);
    const bigEndian = rq.addPresentationContext(VERIFICATION_SOP_CLASS, 5);
    rq.addTransferSyntaxToPresentationContext(bigEndian, '1.2.840.10008.1.2.2');
    assert.deepEqual(answerPresentationContexts(rq), [commitment]);
    const accepted = rq.getPresentationContext(commitment);
    assert.equal(accepted.getAcceptedTransferSyntaxUid(), preferred);
    assert.equal(accepted.getUserRole(), true, 'SCU-role as proposed');
    assert.equal(accepted.getProviderRole(), false, 'SCP-role 0');
    assert.equal(rq.getPresentationContext(ctStorage).getResult(), constants.PresentationContextResult.RejectAbstractSyntaxNotSupported);
    assert.equal(rq.getPresentationContext(bigEndian).getResult(), constants.PresentationContextResult.RejectTransferSyntaxesNotSupported);
  });

  it('the presentation context proposed for reports: syntaxes and SCP/SCU roles of report-sender.ts', () => {
    const rows = table('proposed-presentation-contexts');
    assert.equal(rows.length, 1, 'report associations propose exactly one context');
    const [row] = rows;
    assert.equal(spans(row![1]!)[0], REPORT_PRESENTATION_CONTEXT.abstractSyntax);
    assert.deepEqual(spans(row![2]!), [...REPORT_PRESENTATION_CONTEXT.transferSyntaxes]);
    const scu = /SCU-role (\d)/.exec(row![3]!)?.[1];
    const scp = /SCP-role (\d)/.exec(row![3]!)?.[1];
    assert.deepEqual({ scu, scp }, { scu: REPORT_PRESENTATION_CONTEXT.roles?.scu ? '1' : '0', scp: REPORT_PRESENTATION_CONTEXT.roles?.scp ? '1' : '0' });
  });

  it('DIMSE statuses: exactly the DimseStatus codes the code answers with', () => {
    const documented = table('dimse-status').map((row) => hexCode(spans(row[1]!)[0]!));
    assert.equal(new Set(documented).size, documented.length, 'a status listed twice');
    const used = [...membersUsed('DimseStatus', join('commitment', 'types.ts'))].map((name) => {
      const code = (DimseStatus as Record<string, number>)[name];
      assert.ok(code !== undefined, `DimseStatus.${name} is not defined`);
      return code;
    });
    assert.ok(used.length >= 5, 'the scan of src/ for DimseStatus uses found too little; did the code move?');
    assert.deepEqual(new Set(documented.map(hex)), new Set(used.map(hex)));
  });

  it('Failure Reasons: one row per FailureReason; "Sent" exactly for those the code reports', () => {
    const rows = table('failure-reasons');
    const documented = new Map(rows.map((row) => [hexCode(spans(row[0]!)[0]!), row[2]!]));
    assert.equal(documented.size, rows.length, 'a failure reason listed twice');
    assert.deepEqual(new Set([...documented.keys()].map(hex)), new Set(Object.values(FailureReason).map(hex)));
    const used = membersUsed('FailureReason', join('commitment', 'types.ts'));
    assert.ok(used.size >= 3, 'the scan of src/ for FailureReason uses found too little; did the code move?');
    for (const [name, code] of Object.entries(FailureReason)) {
      const sent = documented.get(code)!;
      assert.equal(sent.startsWith('Yes'), used.has(name), `${hex(code)} (${name}): the document says "${sent}"`);
      if (!used.has(name)) assert.match(sent, /not supported/, `${hex(code)}: PS3.2 asks to say "Code is not supported"`);
    }
  });

  it('verification policies: the names config.ts accepts, weakest first, each catching what the test against Orthanc proved', () => {
    const rows = table('verification-policies');
    assert.deepEqual(rows.map((row) => spans(row[0]!)[0]), [...POLICY_NAMES]);
    for (const row of rows) {
      const policy = spans(row[0]!)[0] as (typeof POLICY_NAMES)[number];
      // Columns 2-4: deleted, truncated, changed byte (the order of FAULTS).
      const documented = Object.fromEntries(FAULTS.map((fault, i) => [fault, row[2 + i] !== 'not detected']));
      assert.deepEqual(documented, CATCHES[policy], `row ${policy}`);
      for (const cell of row.slice(2)) assert.ok(cell === 'not detected' || cell === '`0110H`', `"${cell}" is neither "not detected" nor 0110H`);
    }
  });

  it('what counts as a delivered report: isDeliveredStatus agrees with every code listed', () => {
    let yes = 0;
    let no = 0;
    for (const row of table('event-report-rsp-status')) {
      const delivered = row[2] === 'Yes';
      assert.ok(delivered || row[2] === 'No', `"${row[2]}" is neither Yes nor No`);
      for (const text of spans(row[1]!)) {
        // "Bxxx" stands for the whole range: check both ends.
        const codes = /^[0-9A-F]xxx$/.test(text) ? [parseInt(`${text[0]}000`, 16), parseInt(`${text[0]}FFF`, 16)] : [hexCode(text)];
        for (const code of codes) {
          assert.equal(isDeliveredStatus(code), delivered, `${text}: the document says delivered = ${row[2]}`);
          if (delivered) yes++;
          else no++;
        }
      }
    }
    assert.ok(yes > 0 && no > 0);
    assert.equal(isDeliveredStatus(0x0000), true);
  });

  it('A-ASSOCIATE-RJ: exactly the (result, source, reason) triples the code sends', () => {
    const documented = new Set(table('association-rejections').map((row) => row.slice(0, 3).map(leadingNumber).join('/')));
    const { RejectResult, RejectSource, RejectReason } = constants as unknown as Record<string, Record<string, number>>;
    const sent = new Set<string>();
    for (const file of ['dicom/scp.ts', 'dicom/negotiation.ts']) {
      const text = readFileSync(join(root, 'src', file), 'utf8');
      for (const match of text.matchAll(/RejectResult\.(\w+),\s*(?:source:\s*)?RejectSource\.(\w+),\s*(?:reason:\s*)?RejectReason\.(\w+)/g)) {
        sent.add([RejectResult![match[1]!], RejectSource![match[2]!], RejectReason![match[3]!]].join('/'));
      }
    }
    assert.ok(sent.size >= 4, 'the scan for rejections found too little; did the code move?');
    assert.deepEqual(documented, sent);

    // Every rejection decideAssociation can give is in the table (peer lookup as in strict mode).
    const peer: Peer = { aeTitle: 'CT1', host: '192.0.2.10', port: 104, tls: false, callback: true, source: 'file', addresses: [] };
    const policy = { ourAeTitle: 'STGCMT', findPeer: (ae: string) => (ae === peer.aeTitle ? peer : undefined), checkPeerHost: true, peerListStatus: () => ({ known: 1, refreshedAt: Date.now() }) };
    const decide = (calling: string, called: string, from: string): string => {
      const decision = decideAssociation(new association.Association(calling, called), from, policy);
      return decision.accept ? 'accept' : [decision.result, decision.source, decision.reason].join('/');
    };
    assert.equal(decide('CT1', 'STGCMT', '192.0.2.10'), 'accept');
    for (const [calling, called, from] of [
      ['CT1', 'stgcmt', '192.0.2.10'],
      ['ct1', 'STGCMT', '192.0.2.10'],
      ['CT1', 'STGCMT', '192.0.2.99'],
    ] as const) {
      const outcome = decide(calling, called, from);
      assert.ok(documented.has(outcome), `${calling} -> ${called} from ${from}: ${outcome} is not in the table`);
    }
  });

  it('AE title and port mapping: the defaults of config.ts', () => {
    const [row, ...others] = table('ae-title-mapping');
    assert.equal(others.length, 0);
    assert.equal(spans(row![1]!)[0], settings.aeTitle.default);
    assert.equal(spans(row![2]!)[0], String(settings.dicomPort.default));
    for (const env of spans(row![3]!)) assert.ok(settingByEnv.has(env), `${env} is not a setting`);
  });

  it('configuration table: every default equals config.ts, and the DICOM network settings are all there', () => {
    const listed = new Set<string>();
    for (const row of table('configuration')) {
      const envs = spans(row[0]!);
      assert.ok(envs.length > 0, `no setting in "${row[0]}"`);
      const documented = spans(row[1]!)[0] ?? row[1]!;
      for (const env of envs) {
        const setting = settingByEnv.get(env);
        assert.ok(setting, `${env} is not a setting in src/config.ts`);
        assert.equal(documented, documentedDefault(setting.default), `default of ${env}`);
        listed.add(env);
      }
    }
    const required = [...settingByEnv.keys()].filter(
      (env) => env === 'STGCMT_AET' || env === 'STGCMT_DICOM_PORT' || env === 'STGCMT_ASSOCIATION_MAX_LIFETIME' || env === 'STGCMT_REPORT_TTL' || env.startsWith('STGCMT_MAX_') || /^STGCMT_.*_TIMEOUT$/.test(env),
    );
    assert.ok(required.includes('STGCMT_MAX_PDU') && required.length >= 16, 'the required settings no longer match the patterns');
    for (const env of required) assert.ok(listed.has(env), `${env} missing from the configuration table`);
  });

  it('every "`SETTING` (default `value`)" in the text equals config.ts', () => {
    const mentions = [...doc.matchAll(/`([A-Z][A-Z0-9_]+)` \(default `([^`]+)`\)/g)];
    assert.ok(mentions.length >= 10);
    for (const [, env, value] of mentions) {
      const setting = settingByEnv.get(env!);
      assert.ok(setting, `${env} is not a setting in src/config.ts`);
      assert.equal(value, documentedDefault(setting.default), `default of ${env} in the text`);
    }
  });

  it('every link inside the document points at one of its headings', () => {
    const slugs = new Set(
      lines
        .filter((line) => /^#{1,6} /.test(line))
        .map((line) => line.replace(/^#+ /, '').trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-')),
    );
    const anchors = [...doc.matchAll(/\]\(#([^)]+)\)/g)].map((match) => match[1]!);
    assert.ok(anchors.length > 5);
    for (const anchor of anchors) assert.ok(slugs.has(anchor), `#${anchor} matches no heading`);
  });
});
