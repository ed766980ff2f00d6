/**
 * Composition root: config -> store -> Orthanc client -> peers -> service -> DICOM listener, HTTP API and
 * schedules. Returns a handle whose stop() shuts down in the safe order.
 */
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { ConnectionOptions, TlsOptions } from 'node:tls';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { DicomListener } from './dicom/listener.js';
import { sendReportOnNewAssociation } from './dicom/report-sender.js';
import { createHttpApp } from './http/app.js';
import { ChangesFollower } from './jobs/changes-follower.js';
import { Scheduler } from './jobs/schedules.js';
import { routeDimseLogs } from './log.js';
import { Metrics } from './metrics/metrics.js';
import { OrthancClient } from './orthanc/client.js';
import { UidIndex } from './orthanc/uid-index.js';
import { PeerDirectory, readPeerFile, type PeerEntry } from './peers/peer-directory.js';
import { TransactionStore } from './store/transaction-store.js';
import { CommitmentService } from './transactions/commitment-service.js';

/** How long the start waits for Orthanc's modality list before using the stored one. */
const STARTUP_PEER_WAIT_MS = 5000;

export interface Sidecar {
  readonly dicomPort: number;
  readonly httpPort: number;
  readonly store: TransactionStore;
  readonly service: CommitmentService;
  stop(): Promise<void>;
}

function tlsFiles(config: Config): { cert?: Buffer; key?: Buffer; ca?: Buffer } {
  return {
    ...(config.tlsCert ? { cert: readFileSync(config.tlsCert) } : {}),
    ...(config.tlsKey ? { key: readFileSync(config.tlsKey) } : {}),
    ...(config.tlsCa ? { ca: readFileSync(config.tlsCa) } : {}),
  };
}

export async function startSidecar(config: Config, logger: Logger): Promise<Sidecar> {
  routeDimseLogs(logger);
  const now = (): number => Date.now();
  const metrics = new Metrics();
  const store = TransactionStore.open(config.dataDir, { synchronous: config.dbSync });
  const uidIndex = UidIndex.open(config.dataDir);
  const orthanc = new OrthancClient({
    baseUrl: config.orthancUrl,
    username: config.orthancUsername,
    password: config.orthancPassword,
    timeoutMs: config.orthancTimeout,
    batchSize: config.lookupBatchSize,
    concurrency: config.lookupConcurrency,
  });

  const sources: Array<() => Promise<PeerEntry[]>> = [];
  if (config.peersFromOrthanc) sources.push(() => orthanc.modalities());
  const peersFile = config.peersFile;
  if (peersFile) sources.push(() => readPeerFile(peersFile));
  const peers = new PeerDirectory(sources, { load: () => store.loadPeers(), save: (entries) => store.savePeers(entries) });

  let retrieveAeTitle: string | undefined;
  const refreshFromOrthanc = async (): Promise<void> => {
    try {
      await peers.refresh();
      if (!retrieveAeTitle) retrieveAeTitle = (await orthanc.system()).dicomAet;
    } catch (error) {
      logger.warn({ err: (error as Error).message, peersKnown: peers.list().length }, 'could not refresh peers from Orthanc; keeping the previous list');
    }
  };
  // A hung Orthanc must not hold up the start: after a few seconds we go on with the stored peer list
  // (the refresh keeps going, and the schedule repeats it).
  await Promise.race([refreshFromOrthanc(), new Promise((resolve) => setTimeout(resolve, STARTUP_PEER_WAIT_MS))]);
  logger.info({ peers: peers.list().map((p) => `${p.aeTitle}@${p.host}:${p.port}`), retrieveAeTitle }, 'peers loaded');

  const tls = tlsFiles(config);
  // Reports to a peer marked for TLS present our certificate and check the peer's against STGCMT_TLS_CA.
  const reportTls: ConnectionOptions = { ...tls, rejectUnauthorized: true };
  const logChild = (component: string): Logger => logger.child({ component });

  // The service and the follower need each other: the follower wakes waiting transactions, verifications
  // ask the follower to catch up first.
  let onNewInstances = (): void => undefined;
  const follower = new ChangesFollower(orthanc, uidIndex, () => onNewInstances(), { orthancUrl: config.orthancUrl, backfillChanges: config.indexBackfill, maxPagesPerPoll: 20 }, logChild('changes'));
  const service = new CommitmentService(
    store,
    { store, orthanc, index: { uids: uidIndex, catchUp: () => follower.poll() }, policy: config.verifyPolicy, logger: logChild('verifier'), now },
    {
      store,
      findPeer: (aeTitle) => peers.find(aeTitle),
      sendOnNewAssociation: (peer, callingAeTitle, report) =>
        sendReportOnNewAssociation(peer, callingAeTitle, report, { timeoutMs: config.reportTimeout, strictRoleSelection: config.strictRoleSelection, tls: reportTls }),
      retrieveAeTitle: () => retrieveAeTitle,
      timeoutMs: config.reportTimeout,
      retryInitialMs: config.retryInitial,
      retryMaxMs: config.retryMax,
      logger: logChild('delivery'),
      metrics,
      now,
    },
    { arrivalWaitMs: config.arrivalWait, verifyTimeoutMs: config.verifyTimeout, reportTtlMs: config.reportTtl, retentionMs: config.retention },
    metrics,
    logChild('transactions'),
  );

  const listenerTls: TlsOptions | undefined = config.tlsCert
    ? { ...tls, requestCert: config.tlsRequireClientCert, rejectUnauthorized: config.tlsRequireClientCert }
    : undefined;
  const listener = new DicomListener(
    {
      host: config.dicomHost,
      port: config.dicomPort,
      maxAssociations: config.maxAssociations,
      network: { connectTimeout: config.dimseTimeout, associationTimeout: config.dimseTimeout, pduTimeout: config.dimseTimeout },
      tls: listenerTls,
    },
    {
      logger: logChild('dicom'),
      intake: service,
      acceptance: { ourAeTitle: config.aeTitle, findPeer: (aeTitle) => peers.find(aeTitle), checkPeerHost: config.checkPeerHost },
      maxInstances: config.maxInstances,
      maxPduLength: config.maxPduLength,
    },
    logChild('dicom'),
  );
  metrics.countOpenAssociations = () => listener.openAssociations;
  onNewInstances = () => service.onNewInstances();

  // Resume before listening: work left by a crash or restart goes out first.
  service.resume();
  await listener.start();

  const app = createHttpApp({
    store,
    metrics,
    readiness: {
      dicomListening: () => listener.listening,
      storeOpen: () => store.isOpen,
      orthancReachable: async () => {
        try {
          await orthanc.system();
          return true;
        } catch {
          return false;
        }
      },
    },
    peers: () => peers.list(),
    redeliver: (id) => service.redeliver(id),
    apiToken: config.apiToken,
    logger: logChild('http'),
  });
  const httpServer: Server = await new Promise((resolve, reject) => {
    const server = app.listen(config.httpPort, config.httpHost, (error?: Error) => (error ? reject(error) : resolve(server)));
  });
  const httpAddress = httpServer.address();
  const httpPort = typeof httpAddress === 'object' && httpAddress ? httpAddress.port : config.httpPort;
  logger.info({ httpPort }, 'HTTP API up');

  const scheduler = new Scheduler(logChild('jobs'));
  scheduler.start([
    { name: 'resume-due-work', everyMs: 1000, run: () => service.resume() },
    { name: 'follow-changes', everyMs: 1000, run: () => follower.poll() },
    { name: 'expire-reports', everyMs: 5000, run: () => service.expireOverdue() },
    { name: 'refresh-peers', everyMs: config.peersRefresh, run: refreshFromOrthanc },
    {
      name: 'purge-finished',
      everyMs: 3600 * 1000,
      run: () => {
        const purged = service.purgeFinished();
        if (purged > 0) logger.info({ purged }, 'purged finished transactions past STGCMT_RETENTION');
      },
    },
  ]);

  return {
    dicomPort: listener.port,
    httpPort,
    store,
    service,
    async stop(): Promise<void> {
      logger.info('shutting down: no new associations; finishing work in flight');
      await scheduler.stop();
      await listener.stop(2000);
      await service.stop();
      await new Promise<void>((resolve) => httpServer.close(() => resolve()));
      store.close();
      uidIndex.close();
      logger.info('stopped');
    },
  };
}
