/**
 * Who and what a transaction committed: the Orthanc IDs of its committed instances are noted as the
 * verifier judges them (over one or several rounds), and once the verdict is complete their studies are
 * read from Orthanc in a few batched calls and stored with the transaction. This runs beside the report
 * delivery, never before it: the modality's answer does not wait for the dashboard's data.
 *
 * Patient data: stored for the API behind the token only; never logged (errors are logged by message,
 * and the client's messages name endpoints, not values), never in metrics. STGCMT_SHOW_PATIENT_DATA=false
 * leaves this recorder out: nothing is fetched or stored.
 */
import type { Logger } from 'pino';
import type { OrthancClient } from '../orthanc/client.js';
import type { TransactionRepository } from './repository.js';

export class StudyRecorder {
  private readonly committed = new Map<number, Set<string>>();

  constructor(
    private readonly deps: { readonly repo: Pick<TransactionRepository, 'saveStudies'>; readonly orthanc: Pick<OrthancClient, 'studiesOfInstances'>; readonly logger: Logger },
  ) {}

  /** Orthanc IDs of instances just judged committed in transaction `id`. */
  note(id: number, orthancIds: Iterable<string>): void {
    let set = this.committed.get(id);
    if (!set) this.committed.set(id, (set = new Set()));
    for (const orthancId of orthancIds) set.add(orthancId);
  }

  /** The verdict is complete: read and store its studies. Resolves when stored (or given up, logged). */
  async finish(id: number): Promise<void> {
    const ids = this.committed.get(id);
    this.committed.delete(id);
    if (!ids || ids.size === 0) return;
    try {
      const studies = await this.deps.orthanc.studiesOfInstances([...ids]);
      await this.deps.repo.saveStudies(id, studies);
    } catch (error) {
      // The commitment does not depend on it: the transaction is shown without patient and study.
      this.deps.logger.warn({ transactionId: id, err: (error as Error).message }, 'could not read the studies of a verified transaction from Orthanc');
    }
  }

  /** Forgets a transaction whose verification ends elsewhere (nothing committed to describe). */
  forget(id: number): void {
    this.committed.delete(id);
  }
}
