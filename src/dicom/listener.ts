/**
 * The DICOM listener: a TCP (or TLS) server that hands each admitted connection to a StorageCommitmentScp.
 * We run our own server instead of dcmjs-dimse's Server to choose the bind address, to admit connections
 * and associations by the limits of admission.ts (refusing at once past them), to run every connection's
 * timers from one sweep, and to share one buffer budget between all of them.
 */
import { createServer as createTcpServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TlsOptions } from 'node:tls';
import type { Logger } from 'pino';
import { Admission, type AdmissionLimits } from './admission.js';
import { BufferBudget } from './buffer-budget.js';
import { configureImplementation } from './dimse.js';
import { StorageCommitmentScp, type CloseReason, type CommitmentIntake, type ConnectionTimers } from './scp.js';
import type { AcceptancePolicy, RejectCode } from './negotiation.js';

export interface ListenerOptions {
  readonly host: string;
  readonly port: number;
  readonly limits: AdmissionLimits;
  readonly timers: ConnectionTimers;
  /** Bytes of unfinished incoming messages held at once, beyond each association's small allowance. */
  readonly maxBufferedBytes: number;
  readonly tls: TlsOptions | undefined;
}

export interface ListenerContext {
  readonly logger: Logger;
  readonly intake: CommitmentIntake;
  readonly acceptance: AcceptancePolicy;
  readonly maxInstances: number;
  readonly maxPduLength: number;
}

/** What the listener counts, for the metrics. */
export interface ListenerEvents {
  connectionRefused(reason: 'connection-limit' | 'host-limit'): void;
  connectionClosed(reason: CloseReason): void;
  associationRejected(reason: RejectCode): void;
  handlerError(): void;
}

/** Each association may hold one ordinary message this large without drawing on the shared budget. */
const FREE_BYTES_PER_ASSOCIATION = 1024 * 1024;
const SWEEP_INTERVAL_MS = 1000;

export class DicomListener {
  private server: Server | undefined;
  private sweep: NodeJS.Timeout | undefined;
  private readonly connections = new Map<number, StorageCommitmentScp>();
  private readonly admission: Admission<number>;
  private nextId = 0;
  readonly budget: BufferBudget<StorageCommitmentScp>;
  /** Refusals are logged at most once per host per interval: a flood must not become a log flood. */
  private readonly refusalLogged = new Map<string, number>();

  constructor(
    private readonly options: ListenerOptions,
    private readonly context: ListenerContext,
    private readonly events: ListenerEvents,
    private readonly logger: Logger,
  ) {
    configureImplementation({ maxPduLength: context.maxPduLength });
    this.admission = new Admission(options.limits);
    this.budget = new BufferBudget(options.maxBufferedBytes, FREE_BYTES_PER_ASSOCIATION);
  }

  get openAssociations(): number {
    return this.admission.openAssociations;
  }

  get openConnections(): number {
    return this.admission.openConnections;
  }

  get listening(): boolean {
    return this.server?.listening ?? false;
  }

  /** The bound port (useful with port 0 in tests). */
  get port(): number {
    const address = this.server?.address();
    return typeof address === 'object' && address ? address.port : this.options.port;
  }

  start(): Promise<void> {
    const onConnection = (socket: Socket): void => this.accept(socket);
    this.server = this.options.tls ? createTlsServer(this.options.tls, onConnection) : createTcpServer(onConnection);
    const server = this.server;
    server.on('tlsClientError', (error: Error) => this.logger.warn({ err: error.message }, 'TLS handshake failed'));
    this.sweep = setInterval(() => {
      const now = Date.now();
      for (const scp of this.connections.values()) scp.checkTimers(now);
    }, SWEEP_INTERVAL_MS);
    this.sweep.unref();
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.port, this.options.host, () => {
        server.off('error', reject);
        server.on('error', (error) => this.logger.error({ err: error }, 'DICOM listener error'));
        this.logger.info({ host: this.options.host, port: this.port, tls: Boolean(this.options.tls), ...this.options.limits }, 'DICOM listener up');
        resolve();
      });
    });
  }

  private accept(socket: Socket): void {
    socket.on('error', () => undefined);
    const host = (socket.remoteAddress ?? 'unknown').replace(/^::ffff:/i, '');
    const id = ++this.nextId;
    const admitted = this.admission.connect(id, host, Date.now());
    if (!admitted.ok) {
      this.events.connectionRefused(admitted.why);
      this.logRefusal(host, admitted.why);
      socket.destroy();
      return;
    }
    if (admitted.evict !== undefined) this.connections.get(admitted.evict)?.destroy('evicted');
    socket.setNoDelay(true);
    let scp: StorageCommitmentScp;
    try {
      scp = new StorageCommitmentScp(socket, this.networkOptions(), {
        logger: this.context.logger,
        intake: this.context.intake,
        acceptance: this.context.acceptance,
        maxInstances: this.context.maxInstances,
        maxPduLength: this.context.maxPduLength,
        timers: this.options.timers,
        budget: this.budget,
        claimAssociationSlot: (aeTitle) => {
          const slot = this.admission.associate(id, aeTitle);
          if (slot.ok) return slot;
          return slot.why === 'association-limit'
            ? { ok: false, why: 'too many open associations', code: slot.why }
            : { ok: false, why: `too many open associations for AE title "${aeTitle}"`, code: slot.why };
        },
        onClosedByUs: (reason) => this.events.connectionClosed(reason),
        onRejected: (why) => this.events.associationRejected(why),
        onHandlerError: () => this.events.handlerError(),
      });
    } catch (error) {
      this.admission.close(id);
      this.logger.error({ err: error, remote: host }, 'could not set up a DICOM connection; closing it');
      socket.destroy();
      return;
    }
    this.connections.set(id, scp);
    scp.on('networkError', (error: Error) => {
      this.logger.warn({ remote: host, err: error.message }, 'DICOM connection error; closing');
      socket.destroy();
    });
    socket.on('close', () => {
      this.connections.delete(id);
      this.admission.close(id);
    });
  }

  /**
   * dcmjs-dimse's own timers stay as a safety net behind ours (scp.checkTimers), so they are set past
   * the longest of ours.
   */
  private networkOptions(): { connectTimeout: number; associationTimeout: number; pduTimeout: number } {
    const t = this.options.timers;
    const backstop = Math.max(t.artimMs, t.idleMs, t.stalledMs, t.maxLifetimeMs) + 60_000;
    return { connectTimeout: backstop, associationTimeout: backstop, pduTimeout: backstop };
  }

  private logRefusal(host: string, why: string): void {
    const now = Date.now();
    if ((this.refusalLogged.get(host) ?? 0) > now - 10_000) return;
    this.refusalLogged.set(host, now);
    if (this.refusalLogged.size > 1000) this.refusalLogged.clear();
    this.logger.warn({ remote: host, why, openConnections: this.admission.openConnections }, 'DICOM connection refused (logged at most every 10 s per host)');
  }

  /** Stops accepting; open associations get `graceMs` to finish, then are closed. */
  async stop(graceMs: number): Promise<void> {
    const server = this.server;
    if (!server) return;
    if (this.sweep) clearInterval(this.sweep);
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    const deadline = Date.now() + graceMs;
    while (this.connections.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const scp of this.connections.values()) scp.abortAndClose();
    await closed;
  }
}
