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

  readonly deliveryConfigurationErrors = new Counter({
    name: 'stgcmt_delivery_configuration_errors_total',
    help: 'Delivery attempts the modality refused for a configuration reason, by kind (role-refused, role-unanswered-strict, context-rejected, association-rejected-permanent, peer-not-configured)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  readonly committedThenDeleted = new Counter({
    name: 'stgcmt_committed_then_deleted_total',
    help: 'Instances reported committed that later disappeared from Orthanc (deleted or recycled), found by the committed-instance watch',
    registers: [this.registry],
  });

  readonly protectionFailures = new Counter({
    name: 'stgcmt_protection_failures_total',
    help: 'Attempts to protect committed instances in Orthanc (STGCMT_PROTECT) that failed; the report waits and is retried',
    registers: [this.registry],
  });

  /** Set by the wiring: the DICOM listener's live counts (read at scrape time). */
  dicomGauges: () => { associations: number; connections: number; bufferedBytes: number } = () => ({ associations: 0, connections: 0, bufferedBytes: 0 });

  readonly openAssociations = new Gauge({
    name: 'stgcmt_open_associations',
    help: 'Incoming DICOM associations currently accepted',
    registers: [this.registry],
    collect: () => {
      this.openAssociations.set(this.dicomGauges().associations);
    },
  });

  readonly openConnections = new Gauge({
    name: 'stgcmt_open_connections',
    help: 'Incoming TCP connections on the DICOM port, associated or not',
    registers: [this.registry],
    collect: () => {
      this.openConnections.set(this.dicomGauges().connections);
    },
  });

  readonly bufferedRequestBytes = new Gauge({
    name: 'stgcmt_buffered_request_bytes',
    help: 'Bytes of unfinished incoming DIMSE messages held in memory (bounded by STGCMT_MAX_BUFFERED_BYTES plus 1 MiB per association)',
    registers: [this.registry],
    collect: () => {
      this.bufferedRequestBytes.set(this.dicomGauges().bufferedBytes);
    },
  });

  readonly connectionsRefused = new Counter({
    name: 'stgcmt_dicom_connections_refused_total',
    help: 'DICOM connections closed at once because a limit was reached (connection-limit, host-limit)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly connectionsClosed = new Counter({
    name: 'stgcmt_dicom_connections_closed_total',
    help: 'DICOM connections we ended, by reason (artim, idle, stalled, lifetime, protocol, handler-error, rejected, evicted, released: after the peer\'s A-RELEASE-RQ, shutdown)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly associationsRejected = new Counter({
    name: 'stgcmt_associations_rejected_total',
    help: 'A-ASSOCIATE-RJ sent, by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly internalErrors = new Counter({
    name: 'stgcmt_internal_errors_total',
    help: 'Unexpected errors caught (where: dicom-handler, unhandled-rejection): each is logged with its context',
    labelNames: ['where'] as const,
    registers: [this.registry],
  });

  /**
   * Which node this is (STGCMT_NODE_ID), as an info metric: always 1, the name in its label. Join on it
   * (`* on(instance) group_left(node) stgcmt_node_info`) rather than labelling every metric with the node.
   */
  readonly nodeInfo = new Gauge({
    name: 'stgcmt_node_info',
    help: 'This node: always 1, its STGCMT_NODE_ID in the node label',
    labelNames: ['node'] as const,
    registers: [this.registry],
  });

  /** `node`: STGCMT_NODE_ID (without it, as in tests of one part, no node_info series is exported). */
  constructor(node?: string) {
    collectDefaultMetrics({ register: this.registry, prefix: 'stgcmt_' });
    if (node !== undefined) this.nodeInfo.set({ node }, 1);
  }
}
