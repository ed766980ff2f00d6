/**
 * Who may ask us for storage commitment, and where their reports go. By default the modalities Orthanc
 * knows (declared once, in Orthanc); a local JSON file may add or override entries. A report only ever goes
 * to the host and port configured here for the calling AE title, never to an address the caller supplies.
 */
import { lookup } from 'node:dns/promises';
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { POLICY_NAMES, type PolicyName } from '../transactions/verification-policy.js';

export interface Peer {
  readonly aeTitle: string;
  readonly host: string;
  readonly port: number;
  /** Open report associations to this peer over TLS. */
  readonly tls: boolean;
  /**
   * False when the modality cannot be called back (NAT, firewall): no association is ever opened to it,
   * and its reports wait for an association it opens itself (peer file `"callback": false`).
   */
  readonly callback: boolean;
  /** Where the entry came from, for the API and logs. */
  readonly source: 'orthanc' | 'file';
  /**
   * Peers file only: the verification policy this peer's transactions need, if stricter than STGCMT_VERIFY
   * (a weaker one is ignored; see verification-policy.ts). Not kept in the stored copy of the list: the
   * policies are taken from the file itself each time it is read.
   */
  readonly verify?: PolicyName | undefined;
  /** The host's addresses, resolved at refresh, for the calling-host check. */
  readonly addresses: readonly string[];
}

/** A peer as its source gives it; `callback` absent means true (Orthanc's modality list has no such field). */
export type PeerEntry = Omit<Peer, 'addresses' | 'callback'> & { readonly callback?: boolean };

const peerFileSchema = z.object({
  peers: z.array(
    z.object({
      aet: z.string().trim().min(1).max(16),
      host: z.string().trim().min(1),
      port: z.number().int().min(1).max(65535),
      tls: z.boolean().default(false),
      callback: z.boolean().default(true),
      verify: z.enum(POLICY_NAMES).optional(),
    }),
  ),
});

export async function readPeerFile(path: string): Promise<PeerEntry[]> {
  const parsed = peerFileSchema.safeParse(JSON.parse(await readFile(path, 'utf8')));
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`${path}: ${issue?.path.join('.') ?? ''} ${issue?.message ?? 'invalid'}`);
  }
  return parsed.data.peers.map((p) => ({
    aeTitle: p.aet,
    host: p.host,
    port: p.port,
    tls: p.tls,
    source: 'file' as const,
    ...(p.callback ? {} : { callback: false }),
    ...(p.verify ? { verify: p.verify } : {}),
  }));
}

/**
 * How AE titles are told apart. Orthanc compares them case-insensitively unless `StrictAetComparison` is
 * on, so a modality it accepts as `CT1` may be declared `ct1`: by default we do the same.
 */
export type AetKey = (aeTitle: string) => string;
export const caseInsensitiveAet: AetKey = (aeTitle) => aeTitle.trim().toUpperCase();
export const exactAet: AetKey = (aeTitle) => aeTitle.trim();

/** Entries later in the list win: file entries override Orthanc's for the same AE title (as `key` compares them). */
export function mergePeers(lists: PeerEntry[][], key: AetKey = exactAet): Map<string, PeerEntry> {
  const merged = new Map<string, PeerEntry>();
  for (const list of lists) for (const entry of list) merged.set(key(entry.aeTitle), entry);
  return merged;
}

/** A peer as a source must give it: anything else means the source answered wrongly. */
const peerEntrySchema = z.object({
  aeTitle: z.string().trim().min(1),
  host: z.string().trim().min(1),
  port: z.number().int().min(1).max(65535),
  tls: z.boolean(),
  callback: z.boolean().optional(),
  source: z.enum(['orthanc', 'file']),
  verify: z.enum(POLICY_NAMES).optional(),
});

/** How long one host's resolution may take during a refresh: a hung resolver must not hang the refresh. */
export const DNS_TIMEOUT_MS = 3000;

export type Resolver = (host: string) => Promise<string[]>;

const systemResolver: Resolver = async (host) => (await lookup(host, { all: true })).map((a) => a.address);

/** The host's addresses ([] when it does not resolve), or 'timeout' when the resolver did not answer in time. */
async function resolveWithin(resolver: Resolver, host: string, timeoutMs: number): Promise<string[] | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  try {
    return await Promise.race([resolver(host).catch(() => []), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** How the peer list changed at a refresh, by AE title. */
export interface PeerListChange {
  readonly added: readonly string[];
  readonly removed: readonly string[];
  /** Same AE title, another host, port, TLS or callback flag: its reports go elsewhere (or wait) now. */
  readonly changed: readonly string[];
}

/** Both maps keyed alike (see mergePeers); the change names the configured AE titles. */
export function diffPeers(before: ReadonlyMap<string, PeerEntry>, after: ReadonlyMap<string, PeerEntry>): PeerListChange {
  const added = [...after].filter(([key]) => !before.has(key)).map(([, entry]) => entry.aeTitle);
  const removed = [...before].filter(([key]) => !after.has(key)).map(([, entry]) => entry.aeTitle);
  const changed = [...after]
    .filter(([key, entry]) => {
      const old = before.get(key);
      return old !== undefined && (old.aeTitle !== entry.aeTitle || old.host !== entry.host || old.port !== entry.port || old.tls !== entry.tls || (old.callback ?? true) !== (entry.callback ?? true));
    })
    .map(([, entry]) => entry.aeTitle);
  return { added, removed, changed };
}

/** What one successful refresh found, for the caller to log. */
export interface PeerRefresh extends PeerListChange {
  readonly known: number;
  /** Orthanc's modality list was not empty and now is: restarted without its modalities, or all deleted. */
  readonly orthancEmptied: boolean;
  /** How many modalities Orthanc declared at the refresh before this one. */
  readonly orthancBefore: number;
}

/** For the rejection of an unknown AE: how many peers we know and when the list was last read from its sources. */
export interface PeerListStatus {
  readonly known: number;
  /** Epoch ms of the last successful refresh; undefined while the stored copy is in force. */
  readonly refreshedAt: number | undefined;
}

export interface PeerDirectoryOptions {
  /** Resolves a peer's host for the calling-host check (default: the system resolver). */
  readonly resolver?: Resolver;
  readonly dnsTimeoutMs?: number;
  /** Told after every successful refresh (also when nothing changed). */
  readonly onRefresh?: (refresh: PeerRefresh) => void;
  readonly now?: () => number;
  /** Compare calling AE titles exactly (Orthanc's StrictAetComparison); default: ignoring case, as Orthanc does. */
  readonly strictAetComparison?: boolean;
}

const fromOrthanc = (entries: Iterable<PeerEntry>): number => [...entries].filter((entry) => entry.source === 'orthanc').length;

export class PeerDirectory {
  private peers = new Map<string, Peer>();
  private loaded = false;
  private refreshedAt: number | undefined;
  /** Modalities Orthanc declared at the last refresh (at start: in the stored copy). */
  private orthancCount = 0;

  /**
   * @param sources each returns its entries; later sources override earlier ones
   * @param cache where the last good list is kept across restarts (the store)
   */
  constructor(
    private readonly sources: ReadonlyArray<() => Promise<PeerEntry[]>>,
    private readonly cache?: { load(): PeerEntry[] | Promise<PeerEntry[]>; save(entries: readonly PeerEntry[]): void | Promise<void> },
    private readonly options: PeerDirectoryOptions = {},
  ) {}

  private get key(): AetKey {
    return this.options.strictAetComparison ? exactAet : caseInsensitiveAet;
  }

  /** The peer for a calling AE title; its `aeTitle` is the configured one, whatever the case it called with. */
  find(aeTitle: string): Peer | undefined {
    return this.peers.get(this.key(aeTitle));
  }

  /** With strict comparison: the configured title of a peer that differs from this one only in case. */
  caseVariantOf(aeTitle: string): string | undefined {
    const wanted = caseInsensitiveAet(aeTitle);
    return [...this.peers.values()].find((peer) => caseInsensitiveAet(peer.aeTitle) === wanted)?.aeTitle;
  }

  list(): Peer[] {
    return [...this.peers.values()];
  }

  status(): PeerListStatus {
    return { known: this.peers.size, refreshedAt: this.refreshedAt };
  }

  /**
   * Reloads every source. If any source fails, or gives an entry that is not a peer, the previous
   * directory stays in force and the stored copy is not touched (the error goes to the caller): a
   * transient Orthanc outage, or a wrong answer, must not make us forget the peers.
   */
  async refresh(): Promise<void> {
    // Until the sources first answer (Orthanc may be down or hung at start-up), the list that last
    // loaded is in force.
    if (!this.loaded && this.cache) {
      const stored = (await this.cache.load()).filter((entry) => peerEntrySchema.safeParse(entry).success);
      await this.install(mergePeers([stored], this.key));
      this.orthancCount = fromOrthanc(stored);
    }
    const settled = await Promise.allSettled(this.sources.map((source) => source()));
    const failure = settled.find((result) => result.status === 'rejected');
    if (failure) {
      if (this.refreshedAt === undefined) this.lendNoCallback(settled);
      throw failure.reason;
    }
    const lists = settled.map((result) => (result as PromiseFulfilledResult<PeerEntry[]>).value);
    for (const list of lists) {
      for (const entry of list) {
        const checked = peerEntrySchema.safeParse(entry);
        if (!checked.success) throw new Error(`a peer source gave an invalid entry (${checked.error.issues[0]?.path.join('.') ?? ''}: ${checked.error.issues[0]?.message ?? 'invalid'}); keeping the previous list`);
      }
    }
    const merged = mergePeers(lists, this.key);
    const before: ReadonlyMap<string, PeerEntry> = this.peers;
    await this.install(merged);
    await this.cache?.save([...merged.values()]);
    this.refreshedAt = (this.options.now ?? Date.now)();
    // Counted before merging: a file entry overriding one of Orthanc's does not hide Orthanc's list.
    const orthancBefore = this.orthancCount;
    this.orthancCount = lists.reduce((sum, list) => sum + fromOrthanc(list), 0);
    this.options.onRefresh?.({ ...diffPeers(before, merged), known: merged.size, orthancEmptied: orthancBefore > 0 && this.orthancCount === 0, orthancBefore });
  }

  /**
   * The stored copy does not keep `callback: false` (the store's peer table has no such column): while it
   * is in force (a start with Orthanc unreachable), the sources that did answer (the local peer file) still
   * say which of its peers must never be dialled.
   */
  private lendNoCallback(settled: ReadonlyArray<PromiseSettledResult<PeerEntry[]>>): void {
    for (const result of settled) {
      if (result.status !== 'fulfilled') continue;
      for (const entry of result.value) {
        if (!peerEntrySchema.safeParse(entry).success || entry.callback !== false) continue;
        const key = this.key(entry.aeTitle);
        const peer = this.peers.get(key);
        if (peer?.callback) this.peers.set(key, { ...peer, callback: false });
      }
    }
  }

  private async install(merged: Map<string, PeerEntry>): Promise<void> {
    const resolver = this.options.resolver ?? systemResolver;
    const timeoutMs = this.options.dnsTimeoutMs ?? DNS_TIMEOUT_MS;
    // A host whose resolution times out keeps the addresses it had (a hung resolver must not turn a known
    // modality away); one that does not resolve matches by its literal host name only.
    const previous = new Map([...this.peers.values()].map((p) => [p.host, p.addresses]));
    const next = new Map<string, Peer>();
    await Promise.all(
      [...merged].map(async ([key, entry]) => {
        const resolved = await resolveWithin(resolver, entry.host, timeoutMs);
        const addresses = resolved === 'timeout' ? (previous.get(entry.host) ?? []) : resolved;
        next.set(key, { ...entry, callback: entry.callback ?? true, addresses });
      }),
    );
    this.peers = next;
    this.loaded = true;
  }
}

/** True when a connection from remoteAddress may speak for the peer: its host or a resolved address. */
export function peerMatchesAddress(peer: Peer, remoteAddress: string): boolean {
  const normalize = (address: string): string => address.replace(/^::ffff:/i, '').toLowerCase();
  const remote = normalize(remoteAddress);
  const candidates = [peer.host, ...peer.addresses].map(normalize);
  if (candidates.includes(remote)) return true;
  const isLoopback = (address: string): boolean => address === 'localhost' || address === '::1' || address.startsWith('127.');
  return isLoopback(remote) && candidates.some(isLoopback);
}
