/**
 * Who may ask us for storage commitment, and where their reports go. By default the modalities Orthanc
 * knows (declared once, in Orthanc); a local JSON file may add or override entries. A report only ever goes
 * to the host and port configured here for the calling AE title, never to an address the caller supplies.
 */
import { lookup } from 'node:dns/promises';
import { readFile } from 'node:fs/promises';
import { z } from 'zod';

export interface Peer {
  readonly aeTitle: string;
  readonly host: string;
  readonly port: number;
  /** Open report associations to this peer over TLS. */
  readonly tls: boolean;
  /** Where the entry came from, for the API and logs. */
  readonly source: 'orthanc' | 'file';
  /** The host's addresses, resolved at refresh, for the calling-host check. */
  readonly addresses: readonly string[];
}

export type PeerEntry = Omit<Peer, 'addresses'>;

const peerFileSchema = z.object({
  peers: z.array(
    z.object({
      aet: z.string().trim().min(1).max(16),
      host: z.string().trim().min(1),
      port: z.number().int().min(1).max(65535),
      tls: z.boolean().default(false),
    }),
  ),
});

export async function readPeerFile(path: string): Promise<PeerEntry[]> {
  const parsed = peerFileSchema.safeParse(JSON.parse(await readFile(path, 'utf8')));
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`${path}: ${issue?.path.join('.') ?? ''} ${issue?.message ?? 'invalid'}`);
  }
  return parsed.data.peers.map((p) => ({ aeTitle: p.aet, host: p.host, port: p.port, tls: p.tls, source: 'file' as const }));
}

/** Entries later in the list win: file entries override Orthanc's for the same AE title. */
export function mergePeers(...lists: PeerEntry[][]): Map<string, PeerEntry> {
  const merged = new Map<string, PeerEntry>();
  for (const list of lists) for (const entry of list) merged.set(entry.aeTitle, entry);
  return merged;
}

async function resolveAddresses(host: string): Promise<string[]> {
  try {
    return (await lookup(host, { all: true })).map((a) => a.address);
  } catch {
    return [];
  }
}

export class PeerDirectory {
  private peers = new Map<string, Peer>();
  private loaded = false;

  /**
   * @param sources each returns its entries; later sources override earlier ones
   * @param cache where the last good list is kept across restarts (the store)
   */
  constructor(
    private readonly sources: ReadonlyArray<() => Promise<PeerEntry[]>>,
    private readonly cache?: { load(): PeerEntry[]; save(entries: readonly PeerEntry[]): void },
  ) {}

  find(aeTitle: string): Peer | undefined {
    return this.peers.get(aeTitle.trim());
  }

  list(): Peer[] {
    return [...this.peers.values()];
  }

  /**
   * Reloads every source. If any source fails the previous directory stays in force (and the error goes
   * to the caller): a transient Orthanc outage must not make us forget the peers.
   */
  async refresh(): Promise<void> {
    // Until the sources first answer (Orthanc may be down or hung at start-up), the list that last
    // loaded is in force.
    if (!this.loaded && this.cache) await this.install(mergePeers(this.cache.load()));
    const merged = mergePeers(...(await Promise.all(this.sources.map((source) => source()))));
    await this.install(merged);
    this.cache?.save([...merged.values()]);
  }

  private async install(merged: Map<string, PeerEntry>): Promise<void> {
    const next = new Map<string, Peer>();
    await Promise.all(
      [...merged.values()].map(async (entry) => {
        next.set(entry.aeTitle, { ...entry, addresses: await resolveAddresses(entry.host) });
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
