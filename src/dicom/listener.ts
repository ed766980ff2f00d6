/**
 * The DICOM listener: a TCP (or TLS) server that hands each connection to a StorageCommitmentScp. We run
 * our own server instead of dcmjs-dimse's Server to choose the bind address, count open associations
 * and drop a connection on any protocol error.
 */
import { createServer as createTcpServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TlsOptions } from 'node:tls';
import type { Logger } from 'pino';
import { Implementation, type NetworkOptions } from './dimse.js';
import { StorageCommitmentScp, type ScpContext } from './scp.js';

export interface ListenerOptions {
  readonly host: string;
  readonly port: number;
  readonly maxAssociations: number;
  readonly network: NetworkOptions;
  readonly tls: TlsOptions | undefined;
}

export class DicomListener {
  private server: Server | undefined;
  private readonly connections = new Set<StorageCommitmentScp>();

  constructor(
    private readonly options: ListenerOptions,
    private readonly context: ScpContext,
    private readonly logger: Logger,
  ) {
    // The Maximum Length we advertise in every A-ASSOCIATE-AC, and the limit the PDU guard enforces.
    Implementation.setMaxPduLength(context.maxPduLength);
  }

  get openAssociations(): number {
    return this.connections.size;
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
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.port, this.options.host, () => {
        server.off('error', reject);
        server.on('error', (error) => this.logger.error({ err: error }, 'DICOM listener error'));
        this.logger.info({ host: this.options.host, port: this.port, tls: Boolean(this.options.tls) }, 'DICOM listener up');
        resolve();
      });
    });
  }

  private accept(socket: Socket): void {
    const overCapacity = this.connections.size >= this.options.maxAssociations;
    socket.setNoDelay(true);
    const scp = new StorageCommitmentScp(socket, this.options.network, this.context, overCapacity);
    // dcmjs-dimse marks server-side networks connected itself (Server does this); we replace Server.
    (scp as unknown as { connected: boolean; connectedTime: number }).connected = true;
    (scp as unknown as { connected: boolean; connectedTime: number }).connectedTime = Date.now();
    this.connections.add(scp);
    scp.on('networkError', (error: Error) => {
      this.logger.warn({ remote: socket.remoteAddress, err: error.message }, 'DICOM connection error; closing');
      socket.destroy();
    });
    socket.on('close', () => this.connections.delete(scp));
    socket.on('error', () => undefined);
  }

  /** Stops accepting; open associations get `graceMs` to finish, then are closed. */
  async stop(graceMs: number): Promise<void> {
    const server = this.server;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    const deadline = Date.now() + graceMs;
    while (this.connections.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const scp of this.connections) scp.abortAndClose();
    await closed;
  }
}
