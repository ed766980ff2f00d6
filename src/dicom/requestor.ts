/**
 * Opens an association as requestor, over dcmjs-dimse's Network class rather than its Client, because the
 * Client (0.3.3) drops the roles of presentation contexts it is given, cannot tell whether the acceptor
 * granted a proposed role, and never reports an A-ABORT it receives (it waits for the PDU timeout).
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { clearProposedRoles, association as dimseAssociation, DEFER_PARSING, Network, type Association, type NetworkInstance } from './dimse.js';

export interface ProposedContext {
  readonly abstractSyntax: string;
  readonly transferSyntaxes: readonly string[];
  /** SCP/SCU Role Selection sub-item (PS3.7 D.3.3.4) for this abstract syntax, from the requestor's side. */
  readonly roles?: { readonly scu: boolean; readonly scp: boolean };
}

export interface RequestorOptions {
  readonly host: string;
  readonly port: number;
  readonly callingAeTitle: string;
  readonly calledAeTitle: string;
  readonly contexts: readonly ProposedContext[];
  readonly timeoutMs: number;
  /** Longest silence from the peer once associated (dcmjs-dimse's PDU timeout); default timeoutMs. */
  readonly idleTimeoutMs?: number;
  /** Present to connect with TLS. */
  readonly tls?: ConnectionOptions;
}

/** The acceptor's answer to a role proposal: undefined when it returned no role selection item. */
export type GrantedRoles = { readonly scu: boolean; readonly scp: boolean } | undefined;

export class AssociationRejectedError extends Error {
  constructor(
    readonly result: number,
    readonly source: number,
    readonly reason: number,
    /** Our address on the rejected connection: the one the acceptor saw (for the operator's fix). */
    readonly localAddress?: string,
  ) {
    super(`association rejected (result ${result}, source ${source}, reason ${reason})`);
  }
}

export class AssociationFailedError extends Error {}

export interface OpenAssociation {
  readonly network: NetworkInstance;
  readonly association: Association;
  /** Roles the acceptor granted for an abstract syntax we proposed roles for. */
  grantedRoles(abstractSyntax: string): GrantedRoles;
  /** A-RELEASE, then close; never rejects (a peer that will not release is simply disconnected). */
  release(timeoutMs?: number): Promise<void>;
  abort(): void;
}

export function openAssociation(options: RequestorOptions): Promise<OpenAssociation> {
  const association = new dimseAssociation.Association(options.callingAeTitle, options.calledAeTitle);
  const proposedRoles = new Map<string, { scu: boolean; scp: boolean }>();
  for (const proposed of options.contexts) {
    const id = association.addPresentationContext(proposed.abstractSyntax);
    for (const ts of proposed.transferSyntaxes) association.addTransferSyntaxToPresentationContext(id, ts);
    if (proposed.roles) {
      const context = association.getPresentationContext(id);
      context.setUserRole(proposed.roles.scu);
      context.setProviderRole(proposed.roles.scp);
      proposedRoles.set(proposed.abstractSyntax, proposed.roles);
    }
  }

  const socket: Socket = options.tls
    ? tlsConnect({ host: options.host, port: options.port, ...options.tls })
    : netConnect({ host: options.host, port: options.port });
  // As the listener does: a DIMSE message goes out as several writes (command, data set), and Nagle's
  // algorithm would hold the last one back until the peer's delayed ACK (40 ms on Linux).
  socket.setNoDelay(true);
  // Datasets we receive as requestor are Storage Commitment reports: our reader parses them (DEFER_PARSING).
  const network = new Network(socket, {
    connectTimeout: options.timeoutMs,
    associationTimeout: options.timeoutMs,
    pduTimeout: options.idleTimeoutMs ?? options.timeoutMs,
    datasetReadOptions: DEFER_PARSING,
  });

  return new Promise<OpenAssociation>((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => fail(new AssociationFailedError(`no association with ${options.calledAeTitle} at ${options.host}:${options.port} within ${options.timeoutMs} ms`)), options.timeoutMs);
    const fail = (error: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    };
    socket.once(options.tls ? 'secureConnect' : 'connect', () => {
      network.sendAssociationRequest(association);
      // The A-ASSOCIATE-RQ is on the wire: forget the proposed roles so that after the A-ASSOCIATE-AC is
      // read, a defined role means the acceptor answered a role selection item (dcmjs-dimse only writes
      // roles it reads).
      for (const { context } of association.getPresentationContexts()) {
        if (proposedRoles.has(context.getAbstractSyntaxUid())) clearProposedRoles(context);
      }
    });
    network.on('associationRejected', ({ result, source, reason }: { result: number; source: number; reason: number }) => fail(new AssociationRejectedError(result, source, reason, socket.localAddress)));
    network.on('abort', () => fail(new AssociationFailedError('peer aborted the association during negotiation')));
    network.on('networkError', (error: Error) => fail(new AssociationFailedError(error.message)));
    network.on('close', () => fail(new AssociationFailedError('connection closed during negotiation')));
    network.on('associationAccepted', () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      // Later errors belong to whoever uses the association; keep the socket from throwing unhandled.
      socket.on('error', () => undefined);
      resolve(makeOpenAssociation(network, association, socket));
    });
  });
}

function makeOpenAssociation(network: NetworkInstance, association: Association, socket: Socket): OpenAssociation {
  return {
    network,
    association,
    grantedRoles(abstractSyntax: string): GrantedRoles {
      for (const { context } of association.getPresentationContexts()) {
        if (context.getAbstractSyntaxUid() !== abstractSyntax) continue;
        const scu = context.getUserRole();
        const scp = context.getProviderRole();
        if (scu === undefined && scp === undefined) return undefined;
        return { scu: scu === true, scp: scp === true };
      }
      return undefined;
    },
    release(timeoutMs = 5000): Promise<void> {
      return new Promise<void>((resolve) => {
        if (socket.destroyed) return resolve();
        const done = (): void => {
          clearTimeout(timer);
          socket.destroy();
          resolve();
        };
        const timer = setTimeout(done, timeoutMs);
        network.once('associationReleaseResponse', done);
        network.once('close', done);
        network.sendAssociationReleaseRequest();
      });
    },
    abort(): void {
      if (socket.destroyed) return;
      network.sendAbort();
      socket.destroy();
    },
  };
}
