/**
 * Prometheus metrics (prom-client) on a registry of our own, served by GET /metrics.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class Metrics {
  readonly registry = new Registry();

  readonly transactions = new Counter({
    name: 'stgcmt_transactions_total',
    help: 'Storage commitment transactions by outcome (received, committed, failed, expired, refused)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  readonly instances = new Counter({
    name: 'stgcmt_instances_total',
    help: 'Instances judged, by result (committed, or the failure reason in hex)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  readonly verificationSeconds = new Histogram({
    name: 'stgcmt_verification_seconds',
    help: 'Time from N-ACTION to verdict',
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [this.registry],
  });

  readonly deliverySeconds = new Histogram({
    name: 'stgcmt_delivery_seconds',
    help: 'Duration of one N-EVENT-REPORT delivery attempt',
    labelNames: ['via', 'ok'] as const,
    buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  readonly deliveryAttempts = new Counter({
    name: 'stgcmt_delivery_attempts_total',
    help: 'N-EVENT-REPORT delivery attempts by path and result',
    labelNames: ['via', 'ok'] as const,
    registers: [this.registry],
  });

  /** Set by the wiring: how many incoming associations are open right now (read at scrape time). */
  countOpenAssociations: () => number = () => 0;

  readonly openAssociations = new Gauge({
    name: 'stgcmt_open_associations',
    help: 'Incoming DICOM associations currently open',
    registers: [this.registry],
    collect: () => {
      this.openAssociations.set(this.countOpenAssociations());
    },
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'stgcmt_' });
  }
}
