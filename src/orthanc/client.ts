/**
 * Orthanc REST client (axios). Lookups are batched: /tools/find takes a backslash-separated list of SOP
 * Instance UIDs, and /tools/bulk-content returns each instance's SopClassUid metadata in one call (the SOP
 * Class is not a main DICOM tag in Orthanc's index). Never one HTTP call per instance.
 */
import axios, { AxiosError, type AxiosInstance } from 'axios';
import pLimit from 'p-limit';
import type { PeerEntry } from '../peers/peer-directory.js';

export interface OrthancClientOptions {
  readonly baseUrl: string;
  readonly username?: string | undefined;
  readonly password?: string | undefined;
  readonly timeoutMs: number;
  /** UIDs per /tools/find: its cost grows quadratically with the list, so a few hundred is the sweet spot. */
  readonly batchSize: number;
  /** Batches in flight at once. */
  readonly concurrency: number;
}

/** IDs per /tools/bulk-content call: ~60 ms for 1,000 on Orthanc 1.10.1, linear. */
const BULK_CHUNK = 1000;

/** What re-reading a stored file showed: intact, damaged or missing, or not checkable (no MD5 recorded). */
export type Integrity = 'ok' | 'corrupt' | 'unverifiable';

export interface StoredInstance {
  readonly orthancId: string;
  readonly sopClassUid: string;
}

export type DescribedInstance = StoredInstance & { readonly sopInstanceUid: string };

export interface Change {
  readonly seq: number;
  readonly changeType: string;
  readonly resourceId: string;
}

/** Orthanc could not be asked (unreachable, timeout, 5xx): the caller retries later. */
export class OrthancUnavailableError extends Error {}

interface BulkContentItem {
  ID: string;
  MainDicomTags?: { SOPInstanceUID?: string };
  Metadata?: { SopClassUid?: string };
}

export class OrthancClient {
  private readonly http: AxiosInstance;
  private readonly limit: ReturnType<typeof pLimit>;

  constructor(private readonly options: OrthancClientOptions) {
    this.http = axios.create({
      baseURL: options.baseUrl.replace(/\/+$/, ''),
      timeout: options.timeoutMs,
      auth: options.username !== undefined ? { username: options.username, password: options.password ?? '' } : undefined,
      // Orthanc answers UIDs lists of tens of MB for 100k instances.
      maxContentLength: Infinity,
      maxBodyLength: Infinity,
    });
    this.limit = pLimit(options.concurrency);
  }

  private async call<T>(method: 'GET' | 'POST' | 'PUT', path: string, data?: unknown): Promise<T> {
    try {
      const response = await this.http.request<T>({ method, url: path, data });
      return response.data;
    } catch (error) {
      throw toOrthancError(error, method, path);
    }
  }

  /** Orthanc's own DICOM AE title: the Retrieve AE Title of our reports. */
  async system(): Promise<{ dicomAet: string; version: string }> {
    const system = await this.call<{ DicomAet: string; Version: string }>('GET', '/system');
    return { dicomAet: system.DicomAet, version: system.Version };
  }

  /** The modalities Orthanc knows, as peers: an administrator declares a modality once, in Orthanc. */
  async modalities(): Promise<PeerEntry[]> {
    const modalities = await this.call<Record<string, { AET: string; Host: string; Port: number; UseDicomTls?: boolean }>>('GET', '/modalities?expand');
    return Object.values(modalities).map((m) => ({ aeTitle: m.AET, host: m.Host, port: m.Port, tls: m.UseDicomTls === true, source: 'orthanc' as const }));
  }

  /**
   * For each SOP Instance UID, the stored instance with its SOP Class, or nothing when Orthanc does not
   * hold it. `hints` (UID -> Orthanc ID, from the UID index) let us skip the search: Orthanc is asked
   * about those IDs directly, and only an answer that still carries the same UID counts. Everything not
   * confirmed that way is searched for. Batches run concurrently.
   */
  async lookupInstances(sopInstanceUids: readonly string[], hints?: ReadonlyMap<string, string>): Promise<Map<string, StoredInstance>> {
    const found = new Map<string, StoredInstance>();
    const hinted = hints ? sopInstanceUids.filter((uid) => hints.has(uid)) : [];
    if (hints && hinted.length > 0) {
      for (const item of await this.describeInstances(hinted.map((uid) => hints.get(uid)!))) {
        if (hints.get(item.sopInstanceUid) === item.orthancId) found.set(item.sopInstanceUid, item);
      }
    }
    const unconfirmed = found.size === 0 ? sopInstanceUids : sopInstanceUids.filter((uid) => !found.has(uid));
    const batches: string[][] = [];
    for (let i = 0; i < unconfirmed.length; i += this.options.batchSize) {
      batches.push(unconfirmed.slice(i, i + this.options.batchSize) as string[]);
    }
    await Promise.all(
      batches.map((batch) =>
        this.limit(async () => {
          for (const [uid, instance] of await this.searchBatch(batch)) found.set(uid, instance);
        }),
      ),
    );
    return found;
  }

  /**
   * SOP Instance UID and SOP Class of instances by Orthanc ID, through /tools/bulk-content (Orthanc
   * leaves out IDs it does not hold). Chunks of BULK_CHUNK run with the client's concurrency.
   */
  async describeInstances(orthancIds: readonly string[]): Promise<DescribedInstance[]> {
    const chunks: string[][] = [];
    for (let i = 0; i < orthancIds.length; i += BULK_CHUNK) chunks.push(orthancIds.slice(i, i + BULK_CHUNK) as string[]);
    const described = await Promise.all(chunks.map((chunk) => this.limit(() => this.bulkContent(chunk))));
    return described.flat();
  }

  /**
   * One /tools/bulk-content call, kept to three fields per instance as the answer arrives (Orthanc sends
   * ~770 bytes of JSON per instance). Not rate-limited itself: callers run it inside their own slot.
   */
  private async bulkContent(orthancIds: readonly string[]): Promise<DescribedInstance[]> {
    const items = await this.call<BulkContentItem[]>('POST', '/tools/bulk-content', { Resources: orthancIds, Level: 'Instance', Metadata: true });
    const described: DescribedInstance[] = [];
    for (const item of items) {
      const sopInstanceUid = item.MainDicomTags?.SOPInstanceUID;
      const sopClassUid = item.Metadata?.SopClassUid;
      if (sopInstanceUid && sopClassUid) described.push({ orthancId: item.ID, sopInstanceUid, sopClassUid });
    }
    return described;
  }

  private async searchBatch(uids: readonly string[]): Promise<Map<string, StoredInstance>> {
    const found = new Map<string, StoredInstance>();
    let remaining = new Set(uids);
    // LimitFindInstances silently caps /tools/find answers, so a short answer proves nothing: ask again
    // for what is still missing until an answer comes back empty. A capped answer is never empty while
    // something matches, so this ends, and what is left was truly not found.
    while (remaining.size > 0) {
      const ids = await this.call<string[]>('POST', '/tools/find', {
        Level: 'Instance',
        Query: { SOPInstanceUID: [...remaining].join('\\') },
        Expand: false,
      });
      if (ids.length === 0) break;
      let progressed = false;
      for (const item of await this.bulkContent(ids)) {
        if (!remaining.has(item.sopInstanceUid)) continue;
        found.set(item.sopInstanceUid, { orthancId: item.orthancId, sopClassUid: item.sopClassUid });
        progressed = true;
      }
      if (!progressed) break;
      remaining = new Set([...remaining].filter((uid) => !found.has(uid)));
    }
    return found;
  }

  /**
   * Has Orthanc re-read the stored file and compare it with the MD5 recorded at reception. Orthanc answers
   * 400 on a mismatch and 500 when the file cannot be read: the copy is not intact. A 400 can also mean
   * Orthanc recorded no MD5 at all (StoreMD5ForAttachments off): then nothing can be verified.
   */
  async verifyMd5(orthancId: string): Promise<Integrity> {
    const attachment = `/instances/${encodeURIComponent(orthancId)}/attachments/dicom`;
    try {
      await this.http.post(`${attachment}/verify-md5`, {});
      return 'ok';
    } catch (error) {
      const status = error instanceof AxiosError ? error.response?.status : undefined;
      if (status === 500 || status === 404) return 'corrupt';
      if (status !== 400) throw toOrthancError(error, 'POST', 'verify-md5');
    }
    const info = await this.call<{ UncompressedMD5?: string }>('GET', `${attachment}/info`).catch(() => undefined);
    return info && !info.UncompressedMD5 ? 'unverifiable' : 'corrupt';
  }

  /** Runs verifyMd5 over many instances with the client's concurrency. */
  async verifyMd5Many(orthancIds: readonly string[]): Promise<Map<string, Integrity>> {
    const results = new Map<string, Integrity>();
    await Promise.all(orthancIds.map((id) => this.limit(async () => results.set(id, await this.verifyMd5(id)))));
    return results;
  }

  /** The newest change sequence number, to start watching the changes feed from now. */
  async lastChangeSeq(): Promise<number> {
    const answer = await this.call<{ Last: number }>('GET', '/changes?last');
    return answer.Last;
  }

  async changes(since: number, limit = 1000): Promise<{ changes: Change[]; last: number; done: boolean }> {
    const answer = await this.call<{ Changes: Array<{ Seq: number; ChangeType: string; ID: string }>; Last: number; Done: boolean }>('GET', `/changes?since=${since}&limit=${limit}`);
    return {
      changes: answer.Changes.map((c) => ({ seq: c.Seq, changeType: c.ChangeType, resourceId: c.ID })),
      last: answer.Last,
      done: answer.Done,
    };
  }
}

function toOrthancError(error: unknown, method: string, path: string): Error {
  if (error instanceof AxiosError) {
    const status = error.response?.status;
    const detail = status ? `HTTP ${status}` : (error.code ?? error.message);
    if (status === 401 || status === 403) return new Error(`Orthanc refused our credentials (${method} ${path}: ${detail})`);
    return new OrthancUnavailableError(`Orthanc ${method} ${path}: ${detail}`);
  }
  return error instanceof Error ? error : new Error(String(error));
}
