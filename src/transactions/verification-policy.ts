/**
 * How much evidence a commitment needs beyond Orthanc's index entry (PS3.4 J.3.3.1.2: what we report
 * committed must be kept at Level 2). Modelled on dcm4chee-arc's StorageVerificationPolicy, over what
 * Orthanc's REST API can show:
 *
 * - exists: Orthanc has indexed the instance under the requested SOP Class (the lookup itself); no file
 *   is looked at;
 * - size:   Orthanc reads the stored file and announces its length, which must be the size it recorded at
 *   reception (the body is not transferred; Orthanc 1.10.1 has no cheaper way to look at a file, see
 *   OrthancClient.checkStoredSize): a deleted or truncated file fails, a flipped byte does not;
 * - fetch:  the whole stored file is read through Orthanc, streamed and discarded, and must have exactly
 *   the recorded length: a deleted, truncated or unreadable file fails, a flipped byte does not;
 * - md5:    Orthanc re-reads the file and compares it with the MD5 recorded at reception: any change fails,
 *   and an instance without a recorded MD5 cannot be verified (0110H).
 *
 * Each policy is given the stored instances that would otherwise be committed and returns a finding per
 * Orthanc ID; it throws when Orthanc cannot be asked (the instances stay undecided, STGCMT_VERIFY_TIMEOUT).
 */
import type { Integrity } from '../orthanc/client.js';

/** From the weakest to the strictest: each one catches at least what the ones before it catch. */
export const POLICY_NAMES = ['exists', 'size', 'fetch', 'md5'] as const;
export type PolicyName = (typeof POLICY_NAMES)[number];

export const strictness = (name: PolicyName): number => POLICY_NAMES.indexOf(name);

/** The stricter of two policies. */
export function stricterOf(a: PolicyName, b: PolicyName): PolicyName {
  return strictness(a) >= strictness(b) ? a : b;
}

/**
 * One verification round of one transaction (the verifier begins one per call). Budgets, where a policy
 * has one (fetch), are per round.
 */
export interface PolicyRun {
  /** A finding for every ID asked about. Throws when Orthanc cannot be asked. */
  check(orthancIds: readonly string[]): Promise<Map<string, Integrity>>;
}

export interface VerificationPolicy {
  readonly name: PolicyName;
  begin(): PolicyRun;
}

/** What the file-reading policies need from Orthanc (OrthancClient has it). */
export interface StoredFileReader {
  /** The stored file has the size recorded at reception (see OrthancClient.checkStoredSize). */
  checkStoredSizeMany(orthancIds: readonly string[]): Promise<Map<string, Integrity>>;
  /** The whole file read and counted, within what is left of `budget` (see OrthancClient.fetchStoredFile). */
  fetchStoredFileMany(orthancIds: readonly string[], budget: ReadBudget): Promise<Map<string, Integrity>>;
  verifyMd5Many(orthancIds: readonly string[]): Promise<Map<string, Integrity>>;
}

/** How much one round of the fetch policy may read: bytes, and time from its first read. */
export interface FetchLimits {
  readonly maxBytes: number;
  readonly maxMs: number;
}

/**
 * What one round of the fetch policy may still read. Shared by the reads of the round: once spent, the
 * instances not read yet are 'unverifiable' (0110H), never committed unread.
 */
export class ReadBudget {
  private bytes = 0;
  private readonly deadline: number;
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly limits: FetchLimits,
    private readonly now: () => number = Date.now,
  ) {
    this.deadline = now() + limits.maxMs;
  }

  /** Aborted when the time is up: reads in flight stop at once. */
  get signal(): AbortSignal {
    if (!this.timer && !this.controller.signal.aborted) {
      this.timer = setTimeout(() => this.controller.abort(), Math.max(0, this.deadline - this.now()));
      this.timer.unref();
    }
    return this.controller.signal;
  }

  /** Counts bytes read; false once the round has read more than it may. */
  take(bytes: number): boolean {
    this.bytes += bytes;
    return this.bytes <= this.limits.maxBytes;
  }

  /** Whether another read may start: bytes and time left. */
  get open(): boolean {
    return this.bytes < this.limits.maxBytes && this.now() < this.deadline && !this.controller.signal.aborted;
  }

  get bytesRead(): number {
    return this.bytes;
  }

  /** Stops the timer between checks of a round; the next `signal` arms it again for the time left. */
  end(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

class ExistsPolicy implements VerificationPolicy {
  readonly name = 'exists';
  begin(): PolicyRun {
    // The index entry under the requested class, which the lookup established, is all this policy asks.
    return { check: async (ids) => new Map(ids.map((id) => [id, 'ok' as const])) };
  }
}

class SizePolicy implements VerificationPolicy {
  readonly name = 'size';
  constructor(private readonly reader: StoredFileReader) {}
  begin(): PolicyRun {
    return { check: (ids) => this.reader.checkStoredSizeMany(ids) };
  }
}

class FetchPolicy implements VerificationPolicy {
  readonly name = 'fetch';
  constructor(
    private readonly reader: StoredFileReader,
    private readonly limits: FetchLimits,
    private readonly now: () => number,
  ) {}
  begin(): PolicyRun {
    let budget: ReadBudget | undefined;
    return {
      check: async (ids) => {
        // The clock starts at the round's first read, not when the round began waiting for a slot.
        budget ??= new ReadBudget(this.limits, this.now);
        try {
          return await this.reader.fetchStoredFileMany(ids, budget);
        } finally {
          budget.end();
        }
      },
    };
  }
}

class Md5Policy implements VerificationPolicy {
  readonly name = 'md5';
  constructor(private readonly reader: StoredFileReader) {}
  begin(): PolicyRun {
    return { check: (ids) => this.reader.verifyMd5Many(ids) };
  }
}

export function createPolicy(name: PolicyName, reader: StoredFileReader, fetchLimits: FetchLimits, now: () => number = Date.now): VerificationPolicy {
  switch (name) {
    case 'exists':
      return new ExistsPolicy();
    case 'size':
      return new SizePolicy(reader);
    case 'fetch':
      return new FetchPolicy(reader, fetchLimits, now);
    case 'md5':
      return new Md5Policy(reader);
  }
}

/** A peer's own setting, and what applies: never weaker than the global policy. */
export interface PeerPolicyChoice {
  readonly effective: PolicyName;
  /** The peer asked for a weaker policy than the global one: ignored. */
  readonly ignoredWeaker?: PolicyName;
}

export function choosePolicy(global: PolicyName, peerSetting: PolicyName | undefined): PeerPolicyChoice {
  if (peerSetting === undefined || peerSetting === global) return { effective: global };
  if (strictness(peerSetting) < strictness(global)) return { effective: global, ignoredWeaker: peerSetting };
  return { effective: peerSetting };
}

export interface PeerPolicyUpdate {
  /** Entries asking for a weaker policy than the global one (ignored), when that list changed. */
  readonly ignored?: ReadonlyArray<{ readonly aeTitle: string; readonly verify: PolicyName }>;
  /** Peers whose policy changed since the last reading, with the policy they get now. */
  readonly changed: ReadonlyArray<{ readonly aeTitle: string; readonly policy: PolicyName }>;
}

/**
 * Per-peer settings from the peers file, as last read: which policy each calling AE title gets. Keyed like
 * the peer directory (`key`: ignoring case unless STGCMT_STRICT_AET_COMPARISON).
 */
export class PeerPolicyTable {
  private overrides = new Map<string, PolicyName>();
  private ignoredBefore = '';
  /** The configured AE title and the policy it gets, for each peer the last reading gave a policy of its own. */
  private effective = new Map<string, { aeTitle: string; policy: PolicyName }>();

  constructor(
    readonly global: PolicyName,
    private readonly key: (aeTitle: string) => string,
  ) {}

  /**
   * Takes the peers file's entries. Says what the caller should log, once per change: the entries whose
   * weaker setting is ignored (when that list differs from the previous reading's), and the peers whose
   * policy changed (at the first reading: every peer with a policy of its own).
   */
  update(entries: ReadonlyArray<{ readonly aeTitle: string; readonly verify?: PolicyName | undefined }>): PeerPolicyUpdate {
    this.overrides = new Map(entries.filter((e) => e.verify !== undefined).map((e) => [this.key(e.aeTitle), e.verify!]));
    const ignored = entries
      .filter((e) => choosePolicy(this.global, e.verify).ignoredWeaker !== undefined)
      .map((e) => ({ aeTitle: e.aeTitle, verify: e.verify! }));
    const described = ignored.map((e) => `${e.aeTitle}=${e.verify}`).join(',');
    const ignoredChanged = described !== this.ignoredBefore;
    this.ignoredBefore = described;

    const before = this.effective;
    this.effective = new Map(
      entries
        .map((e) => ({ aeTitle: e.aeTitle, policy: choosePolicy(this.global, e.verify).effective }))
        .filter((e) => e.policy !== this.global)
        .map((e) => [this.key(e.aeTitle), e]),
    );
    const changed: Array<{ aeTitle: string; policy: PolicyName }> = [];
    for (const [key, now] of this.effective) if (before.get(key)?.policy !== now.policy) changed.push(now);
    for (const [key, old] of before) if (!this.effective.has(key)) changed.push({ aeTitle: old.aeTitle, policy: this.global });
    return { ...(ignoredChanged && ignored.length > 0 ? { ignored } : {}), changed };
  }

  policyFor(callingAeTitle: string): PolicyName {
    return choosePolicy(this.global, this.overrides.get(this.key(callingAeTitle))).effective;
  }
}

/** One instance of each policy; hands out the one a calling AE title gets. */
export class PolicySelector {
  private readonly policies: ReadonlyMap<PolicyName, VerificationPolicy>;

  constructor(
    private readonly nameFor: (callingAeTitle: string) => PolicyName,
    reader: StoredFileReader,
    fetchLimits: FetchLimits,
    now: () => number = Date.now,
  ) {
    this.policies = new Map(POLICY_NAMES.map((name) => [name, createPolicy(name, reader, fetchLimits, now)]));
  }

  forCaller(callingAeTitle: string): VerificationPolicy {
    return this.policies.get(this.nameFor(callingAeTitle))!;
  }
}
