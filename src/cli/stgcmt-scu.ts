#!/usr/bin/env node
/**
 * stgcmt-scu: test a storage commitment deployment end to end without a modality. Sends an N-ACTION for
 * the given instances, waits for the N-EVENT-REPORT (on the same association, or on a new one to
 * --listen-port), prints the outcome per instance, and exits 0 only when every instance was committed.
 */
import { parseArgs } from 'node:util';
import ms from 'ms';
import { describeFailureReason, hex16, type SopReference } from '../commitment/types.js';
import { log as dimseLog } from '../dicom/dimse.js';
import { requestCommitment } from './commitment-scu.js';
import { referencesFromFiles, referencesFromOrthancStudy, referencesFromUidList } from './instance-sources.js';
import { ReportReceiver } from './report-receiver.js';

/**
 * Outlasts the sidecar's default STGCMT_ARRIVAL_WAIT (30 s: an instance not yet in Orthanc is waited for
 * before it is reported failed) with a margin for verification and delivery: a shorter wait would end
 * with "no report" exactly when the report says which instance is missing.
 */
const DEFAULT_TIMEOUT = '90s';

const USAGE = `Usage: stgcmt-scu --host HOST --port PORT [options] (FILE.dcm... | --uids FILE | --orthanc URL --study UID)

Connection:
  --host HOST               storage commitment SCP host (default 127.0.0.1)
  --port PORT               its DICOM port (default 11112)
  --called AET              its AE title (default STGCMT)
  --calling AET             our AE title (default STGCMTSCU); must be a peer the SCP knows
Instances (one source):
  FILE.dcm ...              DICOM files: their SOP Class/Instance UIDs
  --uids FILE               lines of "<SOP Class UID> <SOP Instance UID>"
  --orthanc URL --study UID every instance of a study in an Orthanc (--orthanc-user/--orthanc-password)
Report:
  --listen-port PORT        also accept the report on a new association to this port (our AE: --calling)
  --lenient-roles           accept a report association without SCU-role 0 / SCP-role 1 role selection
  --keep-open DURATION      keep the request association open this long for the report
                            (default: --timeout without --listen-port, 0 with it)
  --timeout DURATION        give up waiting for the report after this long (default 90s: the
                            SCP may wait for absent instances first, 30s by default in our sidecar)
  --transaction-uid UID     use this Transaction UID (default: a new one)
  --json                    print the outcome as JSON
Exit status: 0 all committed, 1 some failed, 2 no report / request refused / error, 3 usage.`;

async function main(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        host: { type: 'string', default: '127.0.0.1' },
        port: { type: 'string', default: '11112' },
        called: { type: 'string', default: 'STGCMT' },
        calling: { type: 'string', default: 'STGCMTSCU' },
        uids: { type: 'string' },
        orthanc: { type: 'string' },
        study: { type: 'string' },
        'orthanc-user': { type: 'string' },
        'orthanc-password': { type: 'string' },
        'listen-port': { type: 'string' },
        'lenient-roles': { type: 'boolean', default: false },
        'keep-open': { type: 'string' },
        timeout: { type: 'string', default: DEFAULT_TIMEOUT },
        'transaction-uid': { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${USAGE}\n`);
    return 3;
  }
  const { values: o, positionals } = args;
  if (o.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const duration = (name: string, value: string): number => {
    const parsed = /^\d+$/.test(value) ? Number(value) : ms(value as ms.StringValue);
    if (typeof parsed !== 'number' || !Number.isFinite(parsed)) throw new UsageError(`--${name}: not a duration: ${value}`);
    return parsed;
  };
  const sources = [positionals.length > 0, Boolean(o.uids), Boolean(o.orthanc || o.study)].filter(Boolean).length;
  if (sources !== 1) throw new UsageError('give exactly one instance source: DICOM files, --uids, or --orthanc with --study');
  if (Boolean(o.orthanc) !== Boolean(o.study)) throw new UsageError('--orthanc and --study go together');

  let references: SopReference[];
  if (positionals.length > 0) references = referencesFromFiles(positionals);
  else if (o.uids) references = await referencesFromUidList(o.uids);
  else {
    const auth = o['orthanc-user'] ? { username: o['orthanc-user'], password: o['orthanc-password'] ?? '' } : undefined;
    references = await referencesFromOrthancStudy(o.orthanc!, o.study!, auth);
  }
  if (references.length === 0) throw new UsageError('no instances to commit');

  const timeoutMs = duration('timeout', o.timeout);
  const listenPort = o['listen-port'] ? Number(o['listen-port']) : undefined;
  const keepOpenMs = o['keep-open'] !== undefined ? duration('keep-open', o['keep-open']) : listenPort ? 0 : timeoutMs;
  const receiver = listenPort !== undefined ? new ReportReceiver({ aeTitle: o.calling, port: listenPort, host: '0.0.0.0', strictRoles: !o['lenient-roles'] }) : undefined;
  await receiver?.start();
  try {
    const outcome = await requestCommitment(
      { host: o.host, port: Number(o.port), callingAeTitle: o.calling, calledAeTitle: o.called, timeoutMs: Math.min(timeoutMs, 30_000) },
      references,
      { transactionUid: o['transaction-uid'], keepOpenMs, reportTimeoutMs: timeoutMs, receiver },
    );
    const report = outcome.report;
    if (o.json) {
      process.stdout.write(`${JSON.stringify({ ...outcome, elapsedMs: Math.round(outcome.elapsedMs), rejectedReportAssociations: receiver?.rejections ?? [] }, null, 2)}\n`);
    } else {
      process.stdout.write(`Transaction ${outcome.transactionUid}: N-ACTION status ${hex16(outcome.nAction.status)}${outcome.nAction.errorComment ? ` (${outcome.nAction.errorComment})` : ''}\n`);
      for (const rejection of receiver?.rejections ?? []) process.stdout.write(`Refused a report association from ${rejection.callingAeTitle}: ${rejection.reason}\n`);
      for (const other of outcome.otherReports) {
        // Indented, so that nobody (and no script reading ^COMMITTED) takes them for this run's instances.
        process.stdout.write(`A report for another transaction ${other.transactionUid} arrived (event type ${other.eventTypeId}, ${other.via}): ${other.committed.length} committed, ${other.failed.length} failed; acknowledged, so it will not be sent again\n`);
        for (const c of other.committed) process.stdout.write(`  committed  ${c.sopClassUid}  ${c.sopInstanceUid}\n`);
        for (const f of other.failed) process.stdout.write(`  failed     ${f.sopClassUid}  ${f.sopInstanceUid}  ${hex16(f.failureReason)} ${describeFailureReason(f.failureReason)}\n`);
      }
      if (report) {
        for (const c of report.committed) process.stdout.write(`COMMITTED  ${c.sopClassUid}  ${c.sopInstanceUid}\n`);
        for (const f of report.failed) process.stdout.write(`FAILED     ${f.sopClassUid}  ${f.sopInstanceUid}  ${hex16(f.failureReason)} ${describeFailureReason(f.failureReason)}\n`);
        process.stdout.write(`Report (event type ${report.eventTypeId}, ${report.via}) in ${Math.round(outcome.elapsedMs)} ms: ${report.committed.length} committed, ${report.failed.length} failed of ${references.length} requested\n`);
      } else if (outcome.nAction.status === 0) {
        // The wait that really happened, which is shorter than --timeout when the association was released
        // early and nobody listened.
        const how = receiver ? '' : ` (the request association was kept open ${seconds(keepOpenMs)}, and without --listen-port a report sent later on a new association cannot reach us)`;
        process.stdout.write(`No report within ${seconds(outcome.waitedMs)}${how}: do NOT delete any image on this basis\n`);
      }
    }
    if (outcome.nAction.status !== 0 || !report) return 2;
    const allCommitted = report.failed.length === 0 && report.committed.length === references.length;
    return allCommitted ? 0 : 1;
  } finally {
    await receiver?.stop();
  }
}

class UsageError extends Error {}

/** "0 s", "8 s", "90 s": whole seconds, never rounded up to minutes. */
function seconds(milliseconds: number): string {
  return `${Math.round(milliseconds / 1000)} s`;
}

dimseLog.setLevel('silent');
main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof UsageError) {
      process.stderr.write(`stgcmt-scu: ${error.message}\n\n${USAGE}\n`);
      process.exit(3);
    }
    process.stderr.write(`stgcmt-scu: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(2);
  },
);
