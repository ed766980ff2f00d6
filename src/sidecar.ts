/**
 * Composition root: config -> store -> Orthanc client -> peers -> service -> DICOM listener, HTTP API and
 * schedules. Returns a handle whose stop() shuts down in the safe order.
 */
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { ConnectionOptions, TlsOptions } from 'node:tls';
import type { Logger } from 'pino';
import { withoutCredentials, type Config } from './config.js';
import { DicomListener } from './dicom/listener.js';
import { lazyReport } from './dicom/event-report.js';
import { sendReportOnNewAssociation } from './dicom/report-sender.js';
import { createHttpApp } from './http/app.js';
import { StudyRecorder } from './transactions/study-recorder.js';
import { ChangesFollower } from './jobs/changes-follower.js';
import { Scheduler } from './jobs/schedules.js';
import { routeDimseLogs } from './log.js';
import { Metrics } from './metrics/metrics.js';
import { OrthancClient } from './orthanc/client.js';
import { OrthancProbe, type ProbedSystem } from './orthanc/orthanc-probe.js';
import { assessCommitment, type CommitmentStrength } from './orthanc/recycling.js';
import { UidIndex } from './orthanc/uid-index.js';
import { caseInsensitiveAet, exactAet, PeerDirectory, readPeerFile, type PeerEntry, type PeerRefresh } from './peers/peer-directory.js';
import { OrthancCatalog } from './orthanc/catalog.js';
import { claimDataDir } from './store/data-dir.js';
import { openDatabase, type Database } from './store/database.js';
import { watchCommitted } from './transactions/committed-watch.js';
import { CommitmentService } from './transactions/commitment-service.js';
import { PeerPolicyTable, PolicySelector } from './transactions/verification-policy.js';

/** How long the start waits for Orthanc's modality list before using the stored one. */
const STARTUP_PEER_WAIT_MS = 5000;
/** Readiness: Orthanc is probed every 2 s (2 s timeout at most); the database's probe is in store/database.ts. */
const ORTHANC_PROBE_EVERY_MS = 2000;
const ORTHANC_PROBE_TIMEOUT_MS = 2000;

export interface Sidecar {
  readonly dicomPort: number;
  readonly httpPort: number;
  readonly service: CommitmentService;
  /** Counts an error caught by the process-wide last resort (main.ts) in stgcmt_internal_errors_total. */
  countInternalError(where: string): void;
  stop(): Promise<void>;
}

function tlsFiles(config: Config): { cert?: Buffer; key?: Buffer; ca?: Buffer } {
  return {
    ...(config.tlsCert ? { cert: readFileSync(config.tlsCert) } : {}),
    ...(config.tlsKey ? { key: readFileSync(config.tlsKey) } : {}),
    ...(config.tlsCa ? { ca: readFileSync(config.tlsCa) } : {}),
  };
}

/**
 * Every change of who may call us is logged. Orthanc losing all its modalities at once is almost always
 * an Orthanc restarted with modalities declared through its REST API but not kept in its database
 * (DicomModalitiesInDatabase false): said loudly, once, because from now on every modality is refused.
 */
function logPeerRefresh(log: Logger, refresh: PeerRefresh): void {
  const { added, removed, changed, known } = refresh;
  if (added.length > 0 || removed.length > 0 || changed.length > 0) log.info({ added, removed, changed, peersKnown: known }, 'peer list changed');
  if (refresh.orthancEmptied) {
    log.error(
      { removed, orthancModalitiesBefore: refresh.orthancBefore, peersKnown: known },
      "ORTHANC NOW DECLARES NO MODALITY (it declared some at the last refresh): their associations will be refused (A-ASSOCIATE-RJ), and reports of transactions still pending for them cannot be sent until they are declared again. Was Orthanc restarted with DicomModalitiesInDatabase off, after modalities were added through its REST API? Declare them again (PUT /modalities/{name})",
    );
  }
}

export async function startSidecar(config: Config, logger: Logger): Promise<Sidecar> {
  routeDimseLogs(logger);
  const now = (): number => Date.now();
  const metrics = new Metrics(config.nodeId);
  // One sidecar per data directory (its UID index, and the SQLite store when there is no PostgreSQL); a
  // damaged or unusable store, or a PostgreSQL that stays unreachable, stops the start here (StoreStartError).
  const claim = claimDataDir(config.dataDir);
  let database: Database;
  let uidIndex: UidIndex;
  try {
    database = await openDatabase(config, claim.dir, logger.child({ component: 'store' }));
    uidIndex = UidIndex.open(claim.dir);
  } catch (error) {
    claim.release();
    throw error;
  }
  const repository = database.repository;
  logger.info({ database: database.description, node: config.nodeId }, 'transactions kept in ' + database.description);
  const orthanc = new OrthancClient({
    baseUrl: config.orthancUrl,
    username: config.orthancUsername,
    password: config.orthancPassword,
    timeoutMs: config.orthancTimeout,
    batchSize: config.lookupBatchSize,
    concurrency: config.lookupConcurrency,
    logger: logger.child({ component: 'orthanc' }),
  });
  // Orthanc's AE title is the Retrieve AE Title of our reports. An administrator may rename it: every
  // reading of GET /system (the readiness probe's, every 2 s) keeps it current, and a change is logged.
  let retrieveAeTitle: string | undefined;
  const noteOrthancAet = (aeTitle: string): void => {
    if (aeTitle === retrieveAeTitle) return;
    if (retrieveAeTitle !== undefined) logger.warn({ previous: retrieveAeTitle, now: aeTitle }, "Orthanc's AE title changed; reports name the new one as Retrieve AE Title");
    retrieveAeTitle = aeTitle;
  };
  const readSystem = async (timeoutMs?: number): ReturnType<OrthancClient['system']> => {
    const system = await orthanc.system(timeoutMs);
    noteOrthancAet(system.dicomAet);
    return system;
  };
  // Whether Orthanc may delete what we report committed (recycling), read from every probe's /system answer:
  // logged loudly once at start (when Orthanc first answers), and again only if the verdict changes.
  let commitmentStrength: CommitmentStrength | undefined;
  const onSystem = (system: ProbedSystem): void => {
    const strength = assessCommitment(config.protect, system.recycling, system.version);
    const before = commitmentStrength;
    commitmentStrength = strength;
    if (before && before.warning === strength.warning) return;
    const fields = { protect: config.protect, orthancRecycling: strength.orthancRecycling, orthancVersion: system.version, ...strength.settings };
    if (strength.severity === 'error') logger.error(fields, strength.warning!);
    else if (strength.warning) logger.warn(fields, strength.warning);
    else logger.info(fields, config.protect ? 'STGCMT_PROTECT: committed instances are protected in Orthanc before each report' : 'Orthanc does not recycle: committed instances stay unless someone deletes them');
  };
  const orthancProbe = new OrthancProbe((timeoutMs) => readSystem(timeoutMs), {
    everyMs: ORTHANC_PROBE_EVERY_MS,
    timeoutMs: Math.min(ORTHANC_PROBE_TIMEOUT_MS, config.orthancTimeout),
    onAnswer: onSystem,
  });
  orthancProbe.start();

  const peersLog = logger.child({ component: 'peers' });
  // Per-peer verification policies come from the peers file each time it is read, whether or not Orthanc
  // answered: the stored copy of the peer list (used while Orthanc is down) does not keep them.
  const aetKey = config.strictAetComparison ? exactAet : caseInsensitiveAet;
  const peerPolicies = new PeerPolicyTable(config.verifyPolicy, aetKey);
  const takePolicies = (entries: readonly PeerEntry[]): void => {
    const { ignored, changed } = peerPolicies.update(entries);
    // Said once per change of the file, not at every refresh.
    if (changed.length > 0) peersLog.info({ changed: changed.map((c) => `${c.aeTitle}: ${c.policy}`), global: config.verifyPolicy }, 'verification policy of peers set or changed by the peers file');
    if (ignored) {
      peersLog.warn(
        { peers: ignored.map((e) => e.aeTitle), global: config.verifyPolicy },
        `peers file asks for a weaker verification than STGCMT_VERIFY=${config.verifyPolicy} (${ignored.map((e) => `${e.aeTitle}: ${e.verify}`).join(', ')}): ignored, ${config.verifyPolicy} applies to them`,
      );
    }
  };
  const sources: Array<() => Promise<PeerEntry[]>> = [];
  if (config.peersFromOrthanc) sources.push(() => orthanc.modalities());
  const peersFile = config.peersFile;
  if (peersFile) {
    sources.push(async () => {
      const entries = await readPeerFile(peersFile);
      takePolicies(entries);
      return entries;
    });
  }
  const policies = new PolicySelector((callingAeTitle) => peerPolicies.policyFor(callingAeTitle), orthanc, { maxBytes: config.fetchMaxBytes, maxMs: config.fetchMaxTime }, now);
  const peers = new PeerDirectory(
    sources,
    {
      load: () => repository.loadPeers(),
      save: async (entries) => {
        // The list in force is valid; only its stored copy is behind (it is written again at the next refresh).
        try {
          await repository.savePeers(entries);
        } catch (error) {
          logger.error({ err: (error as Error).message }, 'could not store the peer list');
        }
      },
    },
    { onRefresh: (refresh) => logPeerRefresh(peersLog, refresh), strictAetComparison: config.strictAetComparison },
  );

  // Logged without the credentials it may carry.
  const orthancUrl = withoutCredentials(config.orthancUrl);
  /** Resolves with the error, or undefined when peers and Orthanc's AE title were read. */
  const refreshFromOrthanc = async (): Promise<string | undefined> => {
    try {
      await peers.refresh();
      await readSystem();
      return undefined;
    } catch (error) {
      const err = (error as Error).message;
      logger.warn({ err, orthancUrl, peersKnown: peers.list().length }, 'could not refresh peers from Orthanc; keeping the previous list');
      return err;
    }
  };
  // A hung Orthanc must not hold up the start: after a few seconds we go on with the stored peer list
  // (the refresh keeps going, and the schedule repeats it).
  const startupRefresh = await Promise.race([
    refreshFromOrthanc(),
    new Promise<string>((resolve) => setTimeout(() => resolve(`no answer within ${STARTUP_PEER_WAIT_MS} ms`), STARTUP_PEER_WAIT_MS)),
  ]);
  if (startupRefresh !== undefined) {
    // The refresh may have failed on the peers file; say "unreachable" only if Orthanc itself does not answer.
    const unreachable = await orthanc.system(Math.min(ORTHANC_PROBE_TIMEOUT_MS, config.orthancTimeout)).then(
      () => undefined,
      (error: unknown) => (error instanceof Error ? error.message : String(error)),
    );
    // The first thing to check on a new install: is ORTHANC_URL the Orthanc we think it is?
    if (unreachable !== undefined) {
      logger.warn({ orthancUrl, err: unreachable, peersKnown: peers.list().length }, 'Orthanc cannot be reached at start (check ORTHANC_URL and the credentials); going on with the stored peer list, and trying again');
    }
  }
  logger.info({ peers: peers.list().map((p) => `${p.aeTitle}@${p.host}:${p.port}`), retrieveAeTitle }, 'peers loaded');

  const tls = tlsFiles(config);
  // Reports to a peer marked for TLS present our certificate and check the peer's against STGCMT_TLS_CA.
  const reportTls: ConnectionOptions = { ...tls, rejectUnauthorized: true };
  const logChild = (component: string): Logger => logger.child({ component });

  // The service and the follower need each other: the follower wakes waiting transactions, verifications
  // ask the follower to catch up first.
  let onNewInstances = (): void => undefined;
  const follower = new ChangesFollower(orthanc, uidIndex, () => onNewInstances(), { orthancUrl: config.orthancUrl, backfillChanges: config.indexBackfill, maxPagesPerPoll: 20 }, logChild('changes'));
  const catalog = new OrthancCatalog(orthanc, { uids: uidIndex, catchUp: () => follower.poll() });
  const service = new CommitmentService(
    {
      repo: repository,
      // The verdict and this node's claim on the delivery together: the node holding the modality's
      // association keeps its report (README, "Running several sidecars").
      handOverTtlMs: config.leaseTtl,
      catalog,
      policyFor: (callingAeTitle) => policies.forCaller(callingAeTitle),
      logger: logChild('verifier'),
      now,
      // Patient data off: not fetched, not stored.
      studies: config.showPatientData ? new StudyRecorder({ repo: repository, orthanc, logger: logChild('studies') }) : undefined,
    },
    {
      repo: repository,
      nodeId: config.nodeId,
      leaseTtlMs: config.leaseTtl,
      findPeer: (aeTitle) => peers.find(aeTitle),
      transport: {
        prepare: lazyReport,
        sendOnNewAssociation: (peer, callingAeTitle, report) =>
          sendReportOnNewAssociation(peer, callingAeTitle, report, { timeoutMs: config.reportTimeout, strictRoleSelection: config.strictRoleSelection, tls: reportTls }),
      },
      retrieveAeTitle: () => retrieveAeTitle,
      timeoutMs: config.reportTimeout,
      retryInitialMs: config.retryInitial,
      retryMaxMs: config.retryMax,
      retryConfigErrorMs: config.retryConfigError,
      logger: logChild('delivery'),
      metrics,
      now,
    },
    { arrivalWaitMs: config.arrivalWait, verifyTimeoutMs: config.verifyTimeout, reportTtlMs: config.reportTtl, retentionMs: config.retention, maxInstancesInFlight: config.maxInstancesInFlight },
    metrics,
    logChild('transactions'),
    config.protect ? { repo: repository, orthanc, hints: (uids) => uidIndex.find(uids), logger: logChild('protection'), now } : undefined,
  );

  const listenerTls: TlsOptions | undefined = config.tlsCert
    ? { ...tls, requestCert: config.tlsRequireClientCert, rejectUnauthorized: config.tlsRequireClientCert }
    : undefined;
  const listener = new DicomListener(
    {
      host: config.dicomHost,
      port: config.dicomPort,
      limits: {
        maxConnections: config.maxConnections,
        maxConnectionsPerHost: config.maxConnectionsPerHost,
        maxAssociations: config.maxAssociations,
        maxAssociationsPerAe: config.maxAssociationsPerAe,
      },
      timers: { artimMs: config.artimTimeout, idleMs: config.idleTimeout, stalledMs: config.dimseTimeout, maxLifetimeMs: config.associationMaxLifetime },
      maxBufferedBytes: config.maxBufferedBytes,
      tls: listenerTls,
    },
    {
      logger: logChild('dicom'),
      intake: service,
      acceptance: {
        ourAeTitle: config.aeTitle,
        // Its aeTitle is the configured one: transactions, slots and reports are keyed by it, whatever the case the peer called with.
        findPeer: (aeTitle) => peers.find(aeTitle),
        checkPeerHost: config.checkPeerHost,
        peerListStatus: () => peers.status(),
        ...(config.strictAetComparison ? { caseVariantOf: (aeTitle: string) => peers.caseVariantOf(aeTitle) } : {}),
      },
      maxInstances: config.maxInstances,
      maxPduLength: config.maxPduLength,
    },
    {
      connectionRefused: (reason) => metrics.connectionsRefused.inc({ reason }),
      connectionClosed: (reason) => metrics.connectionsClosed.inc({ reason }),
      associationRejected: (reason) => metrics.associationsRejected.inc({ reason }),
      handlerError: () => metrics.internalErrors.inc({ where: 'dicom-handler' }),
    },
    logChild('dicom'),
  );
  metrics.dicomGauges = () => ({ associations: listener.openAssociations, connections: listener.openConnections, bufferedBytes: listener.budget.heldBytes });
  onNewInstances = () => service.onNewInstances();

  // Resume before listening: work left by a crash or restart goes out first.
  await service.resume();
  await listener.start();

  const app = createHttpApp({
    node: config.nodeId,
    // The API reads through TransactionReads, never the tables.
    reads: database.reads,
    metrics,
    readiness: {
      dicomListener: () => (listener.listening ? { ok: true, reason: `listening on ${config.dicomHost}:${listener.port}` } : { ok: false, reason: 'not listening' }),
      store: () => database.health(),
      orthanc: () => orthancProbe.status(),
      // With STGCMT_PROTECT the commitment holds whatever Orthanc's settings: nothing to warn about meanwhile.
      commitment: () =>
        commitmentStrength ?? { protect: config.protect, orthancRecycling: 'unknown', ...(config.protect ? {} : { warning: 'Orthanc has not answered yet: whether it recycles is unknown' }) },
    },
    peers: () => peers.list(),
    deliveries: service,
    apiToken: config.apiToken,
    dashboard: {
      showPatientData: config.showPatientData,
      // The browser may reach Orthanc by another address than we do; never with our credentials.
      orthancExplorerUrl: config.orthancExplorerUrl ?? `${withoutCredentials(config.orthancUrl).replace(/\/+$/, '')}/app/explorer.html`,
      alertReportAgeMs: config.alertReportAge,
      alertDeliverySilenceMs: config.alertDeliverySilence,
    },
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
    ...(config.watchInterval > 0
      ? [
          {
            name: 'watch-committed',
            everyMs: config.watchInterval,
            run: async () => {
              const watchLog = logChild('watch');
              try {
                const round = await watchCommitted({
                  repo: repository,
                  // The UID index only helps the classic lookup path; the catalog uses it only there.
                  catalog,
                  metrics,
                  logger: watchLog,
                  now,
                  windowMs: config.watchWindow,
                  sample: config.watchSample,
                });
                if (round.checked > 0) watchLog.debug(round, 'committed instances re-checked');
              } catch (error) {
                watchLog.warn({ err: (error as Error).message }, 'could not re-check committed instances in Orthanc; trying again at the next round');
              }
            },
          },
        ]
      : []),
    {
      name: 'purge-finished',
      everyMs: 3600 * 1000,
      run: async () => {
        const purged = await service.purgeFinished();
        if (purged > 0) logger.info({ purged }, 'purged finished transactions past STGCMT_RETENTION');
      },
    },
  ]);

  return {
    dicomPort: listener.port,
    httpPort,
    service,
    countInternalError: (where) => metrics.internalErrors.inc({ where }),
    async stop(): Promise<void> {
      logger.info('shutting down: no new associations; finishing work in flight');
      await scheduler.stop();
      orthancProbe.stop();
      await listener.stop(2000);
      await service.stop();
      await new Promise<void>((resolve) => httpServer.close(() => resolve()));
      await database.close();
      uidIndex.close();
      claim.release();
      logger.info('stopped');
    },
  };
}
