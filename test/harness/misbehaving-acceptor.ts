/**
 * A report acceptor that misbehaves on purpose, to prove the report sender notices: it refuses our SCP
 * role, answers no role item, rejects the Storage Commitment context, rejects the association because it
 * does not know the calling AE title, aborts instead of answering, or answers an error status.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { STORAGE_COMMITMENT_SOP_CLASS } from '../../src/commitment/types.js';
import { constants, internals, responses, Scp, type Association, type NEventReportRequest } from '../../src/dicom/dimse.js';

export type Misbehavior =
  | 'refuse-scp-role'
  | 'omit-role-item'
  | 'reject-context'
  | 'reject-calling-ae'
  | 'abort-on-report'
  | 'abort-on-associate'
  | 'error-status';

export class MisbehavingAcceptor {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  reportsSeen = 0;

  constructor(public behavior: Misbehavior) {}

  get port(): number {
    const address = this.server?.address();
    return typeof address === 'object' && address ? address.port : 0;
  }

  async start(port = 0): Promise<void> {
    const behavior = (): Misbehavior => this.behavior;
    const seen = (): void => {
      this.reportsSeen++;
    };
    class Misbehaving extends Scp {
      override associationRequested(association: Association): void {
        if (behavior() === 'abort-on-associate') {
          this.sendAbort();
          internals(this).socket.destroy();
          return;
        }
        if (behavior() === 'reject-calling-ae') {
          this.sendAssociationReject(constants.RejectResult.Permanent, constants.RejectSource.ServiceUser, constants.RejectReason.CallingAeNotRecognized);
          return;
        }
        for (const { context } of association.getPresentationContexts()) {
          if (context.getAbstractSyntaxUid() !== STORAGE_COMMITMENT_SOP_CLASS || behavior() === 'reject-context') {
            context.setResult(constants.PresentationContextResult.RejectAbstractSyntaxNotSupported);
            continue;
          }
          context.setResult(constants.PresentationContextResult.Accept, context.getTransferSyntaxUids()[0]);
          if (behavior() === 'refuse-scp-role') context.setProviderRole(false);
          if (behavior() === 'omit-role-item') {
            (context as unknown as { userRole: unknown; providerRole: unknown }).userRole = undefined;
            (context as unknown as { userRole: unknown; providerRole: unknown }).providerRole = undefined;
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
      override nEventReportRequest(request: NEventReportRequest, callback: (response: InstanceType<typeof responses.NEventReportResponse>) => void): void {
        seen();
        if (behavior() === 'abort-on-report') {
          this.sendAbort();
          return;
        }
        const response = responses.NEventReportResponse.fromRequest(request);
        response.setStatus(behavior() === 'error-status' ? constants.Status.ProcessingFailure : constants.Status.Success);
        callback(response);
      }
    }
    this.server = createServer((socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('error', () => undefined);
      const scp = new Misbehaving(socket, {});
      scp.on('networkError', () => socket.destroy());
    });
    const server = this.server;
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', () => resolve()));
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
