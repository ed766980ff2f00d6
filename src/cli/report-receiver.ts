/**
 * The SCU side's listener for N-EVENT-REPORTs that arrive on a new association (PS3.4 J.3.3). Like
 * dcm4che's stgcmtscu it can be strict: the Storage Commitment context is accepted only when the requestor
 * proposes SCP/SCU role selection with SCU-role 0 and SCP-role 1, as PS3.4 Annex J requires of the SCP.
 */
import { EventEmitter } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TlsOptions } from 'node:tls';
import { STORAGE_COMMITMENT_SOP_CLASS, VERIFICATION_SOP_CLASS } from '../commitment/types.js';
import { commitmentElements } from '../dicom/dataset-reader.js';
import { EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN } from '../dicom/dataset-writer.js';
import { constants, DEFER_PARSING, internals, responses, Scp, type Association, type NEventReportRequest } from '../dicom/dimse.js';
import { parseEventReport, type ReceivedReport } from './report-parser.js';

export interface ReceivedReportEvent extends ReceivedReport {
  readonly via: 'new-association';
  /** AE titles of the association that carried it: the sender's (calling) and ours as it called us. */
  readonly callingAeTitle: string;
  readonly calledAeTitle: string;
  /** The roles the sender proposed for Storage Commitment (undefined: no role selection item). */
  readonly proposedRoles: { scu: boolean; scp: boolean } | undefined;
}

export interface ReportReceiverOptions {
  readonly aeTitle: string;
  readonly port: number;
  readonly host?: string;
  readonly strictRoles: boolean;
  /** Present to accept report associations over DICOM TLS only. */
  readonly tls?: TlsOptions;
}

export interface RejectedContext {
  readonly callingAeTitle: string;
  readonly reason: string;
}

export class ReportReceiver extends EventEmitter<{ report: [ReceivedReportEvent]; contextRejected: [RejectedContext] }> {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  readonly reports: ReceivedReportEvent[] = [];
  readonly rejections: RejectedContext[] = [];

  constructor(private readonly options: ReportReceiverOptions) {
    super();
  }

  get port(): number {
    const address = this.server?.address();
    return typeof address === 'object' && address ? address.port : this.options.port;
  }

  start(): Promise<void> {
    const options = this.options;
    const recordRejection = (rejection: RejectedContext): void => {
      this.rejections.push(rejection);
      this.emit('contextRejected', rejection);
    };
    const recordReport = (report: ReceivedReportEvent): void => {
      this.reports.push(report);
      this.emit('report', report);
    };
    class ReceiverScp extends Scp {
      private proposedRoles: { scu: boolean; scp: boolean } | undefined;

      override associationRequested(association: Association): void {
        if (association.getCalledAeTitle().trim() !== options.aeTitle) {
          this.sendAssociationReject(constants.RejectResult.Permanent, constants.RejectSource.ServiceUser, constants.RejectReason.CalledAeNotRecognized);
          return;
        }
        for (const { context } of association.getPresentationContexts()) {
          const abstract = context.getAbstractSyntaxUid();
          const ts = [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN].find((t) => context.hasTransferSyntaxUid(t));
          if (abstract !== STORAGE_COMMITMENT_SOP_CLASS && abstract !== VERIFICATION_SOP_CLASS) {
            context.setResult(constants.PresentationContextResult.RejectAbstractSyntaxNotSupported);
          } else if (!ts) {
            context.setResult(constants.PresentationContextResult.RejectTransferSyntaxesNotSupported);
          } else if (abstract === STORAGE_COMMITMENT_SOP_CLASS) {
            const scu = context.getUserRole();
            const scp = context.getProviderRole();
            this.proposedRoles = scu === undefined && scp === undefined ? undefined : { scu: scu === true, scp: scp === true };
            const conformant = this.proposedRoles !== undefined && !this.proposedRoles.scu && this.proposedRoles.scp;
            if (options.strictRoles && !conformant) {
              const rejection = { callingAeTitle: association.getCallingAeTitle().trim(), reason: `role selection ${JSON.stringify(this.proposedRoles ?? 'absent')} instead of SCU-role 0 / SCP-role 1` };
              recordRejection(rejection);
              context.setResult(constants.PresentationContextResult.RejectUser);
            } else {
              // Answer the role item as proposed (granting the requestor its SCP role).
              context.setResult(constants.PresentationContextResult.Accept, ts);
            }
          } else {
            context.setResult(constants.PresentationContextResult.Accept, ts);
          }
        }
        this.sendAssociationAccept();
      }

      override associationReleaseRequested(): void {
        this.sendAssociationReleaseResponse();
      }

      override abort(): void {
        internals(this).socket.destroy();
      }

      override cEchoRequest(request: InstanceType<typeof import('../dicom/dimse.js').requests.CEchoRequest>, callback: (response: InstanceType<typeof responses.CEchoResponse>) => void): void {
        const response = responses.CEchoResponse.fromRequest(request);
        response.setStatus(constants.Status.Success);
        callback(response);
      }

      override nEventReportRequest(request: NEventReportRequest, callback: (response: InstanceType<typeof responses.NEventReportResponse>) => void): void {
        const response = responses.NEventReportResponse.fromRequest(request);
        const association = internals(this).association!;
        try {
          const report: ReceivedReportEvent = {
            ...parseEventReport(request.getEventTypeId(), commitmentElements(request.getDataset()) ?? {}),
            via: 'new-association',
            callingAeTitle: association.getCallingAeTitle().trim(),
            calledAeTitle: association.getCalledAeTitle().trim(),
            proposedRoles: this.proposedRoles,
          };
          response.setStatus(constants.Status.Success);
          callback(response);
          recordReport(report);
        } catch (error) {
          response.setStatus(constants.Status.InvalidArgumentValue);
          response.setErrorComment((error as Error).message.slice(0, 64));
          callback(response);
        }
      }
    }

    const onConnection = (socket: Socket): void => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('error', () => undefined);
      const scp = new ReceiverScp(socket, { datasetReadOptions: DEFER_PARSING });
      scp.on('networkError', () => socket.destroy());
    };
    this.server = options.tls ? createTlsServer(options.tls, onConnection) : createServer(onConnection);
    const server = this.server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.port, this.options.host ?? '127.0.0.1', () => resolve());
    });
  }

  /** Resolves with the first report for the transaction (already received or still to come). */
  waitFor(transactionUid: string, timeoutMs: number): Promise<ReceivedReportEvent> {
    const already = this.reports.find((r) => r.transactionUid === transactionUid);
    if (already) return Promise.resolve(already);
    return new Promise((resolve, reject) => {
      const onReport = (report: ReceivedReportEvent): void => {
        if (report.transactionUid !== transactionUid) return;
        clearTimeout(timer);
        this.off('report', onReport);
        resolve(report);
      };
      const timer = setTimeout(() => {
        this.off('report', onReport);
        reject(new Error(`no N-EVENT-REPORT for ${transactionUid} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.on('report', onReport);
    });
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
