/**
 * The node-cron schedules: resume due work (deliveries whose backoff elapsed, verifications left by an
 * outage or a restart), expire reports past their lifetime, follow arrivals, refresh peers, purge old
 * transactions. Each job is guarded against overlapping itself.
 */
import cron, { type ScheduledTask } from 'node-cron';
import type { Logger } from 'pino';
import { everyInterval } from './cron-expression.js';

export interface Job {
  readonly name: string;
  readonly everyMs: number;
  readonly run: () => unknown;
}

export class Scheduler {
  private readonly tasks: ScheduledTask[] = [];

  constructor(private readonly logger: Logger) {}

  start(jobs: readonly Job[]): void {
    for (const job of jobs) {
      const task = cron.schedule(
        everyInterval(job.everyMs),
        async () => {
          try {
            await job.run();
          } catch (error) {
            this.logger.error({ err: error, job: job.name }, 'scheduled job failed');
          }
        },
        { name: job.name, noOverlap: true, suppressMissedWarning: true },
      );
      this.tasks.push(task);
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.tasks.map((task) => task.destroy()));
    this.tasks.length = 0;
  }
}
