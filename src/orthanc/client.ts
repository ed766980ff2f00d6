/**
 * Orthanc REST client (axios). Lookups are batched, never one HTTP call per instance, in one of two ways
 * chosen by what the Orthanc in front of us can do (GET /system, Capabilities.HasExtendedFind):
 * - extended find (Orthanc 1.12.5 and later): one /tools/find per batch of SOP Instance UIDs with
 *   `ResponseContent: ["MainDicomTags", "Metadata"]` returns each instance's ID, UID and SopClassUid;
 * - classic (1.10, 1.11): /tools/find returns IDs, then /tools/bulk-content their SopClassUid metadata
 *   (the SOP Class is not a main DICOM tag in Orthanc's index).
 * The classic path is slow on 1.12, whose index makes every per-ID read cost grow with the database
 * (bulk-content: 2.3-3.9 s per 1,000 IDs at 20,000 instances against 0.1 s on 1.10.1); 1.10 silently
 * ignores ResponseContent, so the extended path is taken only when Orthanc says it has it.
 */
import type { Readable } from 'node:stream';
import axios, { AxiosError, type AxiosInstance } from 'axios';
import pLimit from 'p-limit';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { PeerEntry } from '../peers/peer-directory.js';
import type { StudyRecord } from '../transactions/records.js';
import type { ReadBudget } from '../transactions/verification-policy.js';

export interface OrthancClientOptions {
  readonly baseUrl: string;
  readonly username?: string | undefined;
  readonly password?: string | undefined;
  readonly timeoutMs: number;
  /** UIDs per /tools/find: its cost grows quadratically with the list, so a few hundred is the sweet spot. */
  readonly batchSize: number;
  /** Batches in flight at once. */
  readonly concurrency: number;
  /** Where a wrong answer is reported (a warning naming the endpoint and the problem, never the body). */
  readonly logger?: Logger | undefined;
}

/** IDs per /tools/bulk-content call: ~60 ms for 1,000 on Orthanc 1.10.1, linear. */
const BULK_CHUNK = 1000;
/**
 * The size policy reads a body this small rather than close the connection: measured on 1.10.1 with
 * 0.6 KB files, a new connection per instance cost as much as reading the whole file.
 */
const SIZE_READS_BODY_UP_TO = 64 * 1024;

/** Series per /tools/bulk-content call: each lists its instances' IDs (46 bytes each), so fewer at a time. */
const SERIES_CHUNK = 20;
/** Changes per /changes page (the changes follower's page size). */
export const CHANGES_PAGE = 1000;

/**
 * The largest answer we accept, from the largest list one call can return: a /tools/bulk-content chunk,
 * a /tools/find batch or a /changes page, whichever is longest, at 8 KiB per item (Orthanc sends ~0.8 KiB
 * of JSON per instance with its metadata, ~0.2 KiB per change, 46 bytes per ID), plus 1 MiB for the rest
 * (/system, /modalities with hundreds of entries). With the defaults: 9 MiB. Anything longer is not an
 * answer to our question, and must not be buffered whole.
 */
export function maxAnswerBytes(batchSize: number): number {
  return 1024 * 1024 + Math.max(batchSize, BULK_CHUNK, CHANGES_PAGE) * 8 * 1024;
}

/** What re-reading a stored file showed: intact, damaged or missing, or not checkable (no MD5 recorded). */
export type Integrity = 'ok' | 'corrupt' | 'unverifiable';

export interface StoredInstance {
  readonly orthancId: string;
  readonly sopClassUid: string;
  /** Orthanc ID of its series, when the answer carried it (both lookup paths ask for it). */
  readonly parentSeries?: string | undefined;
}

/**
 * Orthanc's recycling settings as GET /system shows them: MaximumStorageMode since 1.11.2,
 * MaximumStorageSize since 1.11.3, MaximumPatientCount since 1.12.4 (Orthanc's changelog; 1.12.7 measured
 * showing all three, 1.10.1 none, then undefined). Recycling is on when either maximum is above 0 and the
 * mode is not Reject.
 */
export interface RecyclingSettings {
  readonly maximumStorageSize: number;
  /** Undefined before Orthanc 1.12.4, which does not show it. */
  readonly maximumPatientCount: number | undefined;
  readonly maximumStorageMode: string;
}

/** A series' parent study and its instances' IDs (POST /tools/bulk-content, Level Series). */
export interface SeriesContent {
  readonly orthancId: string;
  readonly parentStudy: string;
  readonly instances: readonly string[];
}

export type DescribedInstance = StoredInstance & { readonly sopInstanceUid: string };

/**
 * A study as the dashboard shows it (patient data): the application layer's StudyRecord, always with
 * Orthanc's ID. `modalities`: the Modality of each series holding some of the instances, sorted,
 * `\\`-separated.
 */
export type StudyDescription = StudyRecord & { readonly orthancStudyId: string };

export interface Change {
  readonly seq: number;
  readonly changeType: string;
  readonly resourceId: string;
}

/** Orthanc could not be asked (unreachable, timeout, 5xx): the caller retries later. */
export class OrthancUnavailableError extends Error {
  constructor(
    message: string,
    /** The HTTP status Orthanc answered, if it answered. */
    readonly status?: number,
  ) {
    super(message);
  }
}

/**
 * Orthanc (or something in its place) answered, but not what that endpoint answers: HTML from a proxy,
 * the wrong JSON, a truncated body. A fault like an outage, never evidence: an instance missing from a
 * wrong answer is not absent.
 */
export class OrthancInvalidAnswerError extends OrthancUnavailableError {}

// Schemas of the answers we use (Orthanc 1.10 to 1.12). Unknown fields are ignored; missing or mistyped
// fields we rely on make the whole answer invalid.
const orthancId = z.string().regex(/^[0-9a-f]{8}(-[0-9a-f]{8}){4}$/, 'not an Orthanc ID');
const systemAnswer = z.object({
  DicomAet: z.string().trim().min(1),
  Version: z.string(),
  // Since 1.12.5; absent before.
  Capabilities: z.object({ HasExtendedFind: z.boolean().optional() }).optional(),
  // Shown by 1.12 (1.12.7 measured), not by 1.10.1: MaximumStorageSize in MB, MaximumStorageMode Recycle or Reject.
  MaximumStorageSize: z.number().min(0).optional(),
  MaximumPatientCount: z.number().min(0).optional(),
  MaximumStorageMode: z.string().optional(),
});
const portNumber = z.union([z.number(), z.string().regex(/^\d+$/).transform(Number)]).pipe(z.number().int().min(1).max(65535));
const modalitiesAnswer = z.record(
  z.string(),
  z.object({ AET: z.string().trim().min(1), Host: z.string().trim().min(1), Port: portNumber, UseDicomTls: z.boolean().optional() }),
);
const findAnswer = z.array(orthancId);
/**
 * Instances with their UID and SOP Class: what /tools/bulk-content (Level Instance, Metadata) and
 * /tools/find with ResponseContent both answer.
 */
const describedInstancesAnswer = z.array(
  z.object({
    ID: orthancId,
    MainDicomTags: z.object({ SOPInstanceUID: z.string().min(1) }),
    // Orthanc records the SOP Class of every instance it stores; without it nothing can be judged.
    Metadata: z.object({ SopClassUid: z.string().min(1) }),
    ParentSeries: orthancId.optional(),
  }),
);

function toDescribed(items: z.output<typeof describedInstancesAnswer>): DescribedInstance[] {
  return items.map((item) => ({ orthancId: item.ID, sopInstanceUid: item.MainDicomTags.SOPInstanceUID, sopClassUid: item.Metadata.SopClassUid, ...(item.ParentSeries ? { parentSeries: item.ParentSeries } : {}) }));
}
const seriesContentAnswer = z.array(z.object({ ID: orthancId, ParentStudy: orthancId, Instances: z.array(orthancId) }));
const studyParentAnswer = z.array(z.object({ ID: orthancId, ParentPatient: orthancId }));
/** PUT /patients/{id}/protected answers an empty body (1.10.1 and 1.12.7 measured). */
const emptyAnswer = z.literal('');
/** /tools/bulk-content at Series level from instance IDs: each parent series once, with its study. */
const seriesAnswer = z.array(z.object({ ID: orthancId, ParentStudy: orthancId, MainDicomTags: z.object({ Modality: z.string().optional() }).optional() }));
/** /tools/bulk-content at Study level: the study's own tags and its patient's. Any of them may be absent. */
const studyAnswer = z.array(
  z.object({
    ID: orthancId,
    MainDicomTags: z.object({
      StudyInstanceUID: z.string().min(1),
      StudyDate: z.string().optional(),
      StudyDescription: z.string().optional(),
      AccessionNumber: z.string().optional(),
    }),
    PatientMainDicomTags: z.object({ PatientID: z.string().optional(), PatientName: z.string().optional() }).optional(),
  }),
);
const verifyMd5Answer = z.object({});
const attachmentInfoAnswer = z.object({ UncompressedMD5: z.string().optional() });
/** The size Orthanc recorded at reception, as it sends the file back (uncompressed). */
const attachmentSizeAnswer = z.object({ UncompressedSize: z.number().int().min(0) });
const seq = z.number().int().min(0);
const lastChangeAnswer = z.object({ Last: seq });
const changesAnswer = z.object({
  Changes: z.array(z.object({ Seq: seq, ChangeType: z.string(), ID: z.string() })),
  Last: seq,
  Done: z.boolean(),
});

/** What is wrong with an answer, in words that never quote it (it may hold patient data). */
function describeProblem(error: z.ZodError, contentType: string | undefined): string {
  const issue = error.issues[0];
  const where = issue && issue.path.length > 0 ? `at ${issue.path.map(String).join('.')}: ` : '';
  const more = error.issues.length > 1 ? ` (+${error.issues.length - 1} more)` : '';
  const type = contentType && !/json/i.test(contentType) ? `, content-type ${contentType.split(';')[0]}` : '';
  return `${where}${issue?.message ?? 'invalid'}${more}${type}`;
}

/** A wrong answer is logged at most once per endpoint in this interval (the verifier retries every 5 s). */
const WARN_EVERY_MS = 30_000;

/** How lookups are made (see the file comment). */
export type LookupPath = 'extended-find' | 'classic';

/** How long a capability reading is trusted: an Orthanc upgraded or downgraded under us is noticed. */
const CAPABILITIES_TTL_MS = 60_000;

export class OrthancClient {
  private readonly http: AxiosInstance;
  private readonly limit: ReturnType<typeof pLimit>;
  private readonly warnedAt = new Map<string, number>();
  private lookupPathReading: { readonly path: Promise<LookupPath>; readonly at: number } | undefined;

  constructor(private readonly options: OrthancClientOptions) {
    const maxBytes = maxAnswerBytes(options.batchSize);
    this.http = axios.create({
      baseURL: options.baseUrl.replace(/\/+$/, ''),
      timeout: options.timeoutMs,
      auth: options.username !== undefined ? { username: options.username, password: options.password ?? '' } : undefined,
      // Answers and requests are bounded by our batch sizes (see maxAnswerBytes); a longer one is a fault.
      maxContentLength: maxBytes,
      maxBodyLength: maxBytes,
    });
    this.limit = pLimit(options.concurrency);
  }

  /**
   * One REST call whose answer must match `schema`. `endpoint` names it in errors and logs without
   * resource IDs ("POST /tools/find").
   */
  private async call<S extends z.ZodType>(
    method: 'GET' | 'POST' | 'PUT',
    path: string,
    schema: S,
    options: { endpoint?: string; data?: unknown; timeoutMs?: number } = {},
  ): Promise<z.output<S>> {
    const endpoint = options.endpoint ?? `${method} ${path}`;
    let response;
    try {
      response = await this.http.request<unknown>({ method, url: path, data: options.data, ...(options.timeoutMs !== undefined ? { timeout: options.timeoutMs } : {}) });
    } catch (error) {
      const converted = toOrthancError(error, endpoint);
      if (converted instanceof OrthancInvalidAnswerError) this.warnInvalid(endpoint, converted.message);
      throw converted;
    }
    const parsed = schema.safeParse(response.data);
    if (!parsed.success) {
      const contentType = response.headers['content-type'];
      const problem = describeProblem(parsed.error, typeof contentType === 'string' ? contentType : undefined);
      this.warnInvalid(endpoint, problem);
      throw new OrthancInvalidAnswerError(`Orthanc ${endpoint}: unexpected answer (${problem})`, response.status);
    }
    return parsed.data;
  }

  private warnInvalid(endpoint: string, problem: string): void {
    const now = Date.now();
    const last = this.warnedAt.get(endpoint);
    if (last !== undefined && now - last < WARN_EVERY_MS) return;
    this.warnedAt.set(endpoint, now);
    this.options.logger?.warn({ endpoint, problem }, 'Orthanc answered something that is not a valid answer; treated as Orthanc unavailable, not as evidence');
  }

  /** Orthanc's own DICOM AE title: the Retrieve AE Title of our reports. `timeoutMs` overrides the client's. */
  async system(timeoutMs?: number): Promise<{ dicomAet: string; version: string; lookupPath: LookupPath; recycling: RecyclingSettings | undefined }> {
    const system = await this.call('GET', '/system', systemAnswer, { timeoutMs });
    const lookupPath = system.Capabilities?.HasExtendedFind === true ? 'extended-find' : 'classic';
    const recycling =
      system.MaximumStorageSize !== undefined
        ? { maximumStorageSize: system.MaximumStorageSize, maximumPatientCount: system.MaximumPatientCount, maximumStorageMode: system.MaximumStorageMode ?? 'Recycle' }
        : undefined;
    return { dicomAet: system.DicomAet, version: system.Version, lookupPath, recycling };
  }

  /**
   * The lookup path for this Orthanc, read from /system at most once per CAPABILITIES_TTL_MS (a failed
   * reading is not kept). A change is logged: it means Orthanc was replaced under us.
   */
  lookupPath(): Promise<LookupPath> {
    const now = Date.now();
    const reading = this.lookupPathReading;
    if (reading && now - reading.at < CAPABILITIES_TTL_MS) return reading.path;
    const previous = reading?.path;
    const path = this.system().then(async (system) => {
      const before = previous ? await previous.catch(() => undefined) : undefined;
      if (before !== system.lookupPath) this.options.logger?.info({ orthancVersion: system.version, lookupPath: system.lookupPath }, 'Orthanc lookup path chosen from its capabilities');
      return system.lookupPath;
    });
    path.catch(() => {
      if (this.lookupPathReading?.path === path) this.lookupPathReading = undefined;
    });
    this.lookupPathReading = { path, at: now };
    return path;
  }

  /**
   * The modalities Orthanc knows, as peers: an administrator declares a modality once, in Orthanc. An
   * answer with one malformed entry is rejected whole: the caller keeps the list it has.
   */
  async modalities(): Promise<PeerEntry[]> {
    const modalities = await this.call('GET', '/modalities?expand', modalitiesAnswer);
    return Object.values(modalities).map((m) => ({ aeTitle: m.AET, host: m.Host, port: m.Port, tls: m.UseDicomTls === true, source: 'orthanc' as const }));
  }

  /**
   * For each SOP Instance UID, the stored instance with its SOP Class, or nothing when Orthanc does not
   * hold it. `hints` (UID -> Orthanc ID, from the UID index) let us skip the search: Orthanc is asked
   * about those IDs directly, and only an answer that still carries the same UID counts. Everything not
   * confirmed that way is searched for. Batches run concurrently. On the extended-find path hints are not
   * used: a search there costs what reading the hinted IDs would.
   */
  async lookupInstances(sopInstanceUids: readonly string[], hints?: ReadonlyMap<string, string>): Promise<Map<string, StoredInstance>> {
    if ((await this.lookupPath()) === 'extended-find') return this.searchAll(sopInstanceUids, (batch) => this.searchBatch(batch, (ids) => this.findExtended(ids)));
    const found = new Map<string, StoredInstance>();
    const hinted = hints ? sopInstanceUids.filter((uid) => hints.has(uid)) : [];
    if (hints && hinted.length > 0) {
      for (const item of await this.describeInstances(hinted.map((uid) => hints.get(uid)!))) {
        if (hints.get(item.sopInstanceUid) === item.orthancId) found.set(item.sopInstanceUid, item);
      }
    }
    const unconfirmed = found.size === 0 ? sopInstanceUids : sopInstanceUids.filter((uid) => !found.has(uid));
    for (const [uid, instance] of await this.searchAll(unconfirmed, (batch) => this.searchBatch(batch, (uids) => this.findClassic(uids)))) found.set(uid, instance);
    return found;
  }

  /** `search` over batches of the configured size, with the client's concurrency. */
  private async searchAll(uids: readonly string[], search: (batch: string[]) => Promise<Map<string, StoredInstance>>): Promise<Map<string, StoredInstance>> {
    const found = new Map<string, StoredInstance>();
    const batches: string[][] = [];
    for (let i = 0; i < uids.length; i += this.options.batchSize) batches.push(uids.slice(i, i + this.options.batchSize) as string[]);
    await Promise.all(
      batches.map((batch) =>
        this.limit(async () => {
          for (const [uid, instance] of await search(batch)) found.set(uid, instance);
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
    const endpoint = 'POST /tools/bulk-content';
    const items = await this.call('POST', '/tools/bulk-content', describedInstancesAnswer, { endpoint, data: { Resources: orthancIds, Level: 'Instance', Metadata: true } });
    const asked = new Set(orthancIds);
    if (items.some((item) => !asked.has(item.ID))) {
      const problem = 'an instance that was not asked about';
      this.warnInvalid(endpoint, problem);
      throw new OrthancInvalidAnswerError(`Orthanc ${endpoint}: unexpected answer (${problem})`, 200);
    }
    return toDescribed(items);
  }

  /**
   * The studies holding these instances (Orthanc IDs), with patient and study tags: /tools/bulk-content at
   * Series level turns BULK_CHUNK instance IDs into their distinct parent series (with Modality) per call,
   * then one call at Study level describes the distinct studies. Never one call per instance.
   */
  async studiesOfInstances(instanceIds: readonly string[]): Promise<StudyDescription[]> {
    const series = new Map<string, { study: string; modality: string | undefined }>();
    const chunks: string[][] = [];
    for (let i = 0; i < instanceIds.length; i += BULK_CHUNK) chunks.push(instanceIds.slice(i, i + BULK_CHUNK) as string[]);
    await Promise.all(
      chunks.map((chunk) =>
        this.limit(async () => {
          const items = await this.call('POST', '/tools/bulk-content', seriesAnswer, { endpoint: 'POST /tools/bulk-content (Series)', data: { Resources: chunk, Level: 'Series' } });
          for (const item of items) series.set(item.ID, { study: item.ParentStudy, modality: item.MainDicomTags?.Modality });
        }),
      ),
    );
    const modalities = new Map<string, Set<string>>();
    for (const { study, modality } of series.values()) {
      const set = modalities.get(study) ?? new Set<string>();
      if (modality) set.add(modality.trim());
      modalities.set(study, set);
    }
    const studyIds = [...modalities.keys()];
    const studies: StudyDescription[] = [];
    for (let i = 0; i < studyIds.length; i += BULK_CHUNK) {
      const items = await this.call('POST', '/tools/bulk-content', studyAnswer, { endpoint: 'POST /tools/bulk-content (Study)', data: { Resources: studyIds.slice(i, i + BULK_CHUNK), Level: 'Study' } });
      for (const item of items) {
        const text = (value: string | undefined): string | null => (value === undefined || value.trim() === '' ? null : value.trim());
        const kinds = [...(modalities.get(item.ID) ?? [])].sort();
        studies.push({
          orthancStudyId: item.ID,
          studyInstanceUid: item.MainDicomTags.StudyInstanceUID,
          patientId: text(item.PatientMainDicomTags?.PatientID),
          patientName: text(item.PatientMainDicomTags?.PatientName),
          studyDate: text(item.MainDicomTags.StudyDate),
          studyDescription: text(item.MainDicomTags.StudyDescription),
          accessionNumber: text(item.MainDicomTags.AccessionNumber),
          modalities: kinds.length > 0 ? kinds.join('\\') : null,
        });
      }
    }
    return studies;
  }

  /** Classic path: /tools/find for IDs, then /tools/bulk-content for their UIDs and SOP Classes. */
  private async findClassic(uids: readonly string[]): Promise<DescribedInstance[]> {
    const ids = await this.call('POST', '/tools/find', findAnswer, {
      data: { Level: 'Instance', Query: { SOPInstanceUID: uids.join('\\') }, Expand: false },
    });
    return ids.length === 0 ? [] : this.bulkContent(ids);
  }

  /** Extended-find path: one /tools/find that answers with the instances' UIDs and SOP Classes. */
  private async findExtended(uids: readonly string[]): Promise<DescribedInstance[]> {
    const items = await this.call('POST', '/tools/find', describedInstancesAnswer, {
      endpoint: 'POST /tools/find (ResponseContent)',
      // Parent: the series ID, what protection climbs from (no extra call per instance).
      data: { Level: 'Instance', Query: { SOPInstanceUID: uids.join('\\') }, ResponseContent: ['MainDicomTags', 'Metadata', 'Parent'] },
    });
    return toDescribed(items);
  }

  private async searchBatch(uids: readonly string[], find: (uids: readonly string[]) => Promise<DescribedInstance[]>): Promise<Map<string, StoredInstance>> {
    const found = new Map<string, StoredInstance>();
    let remaining = new Set(uids);
    // LimitFindInstances silently caps /tools/find answers, so a short answer proves nothing: ask again
    // for what is still missing until an answer comes back empty. A capped answer is never empty while
    // something matches, so this ends, and what is left was truly not found.
    while (remaining.size > 0) {
      const items = await find([...remaining]);
      if (items.length === 0) break;
      let progressed = false;
      for (const item of items) {
        if (!remaining.has(item.sopInstanceUid)) continue;
        found.set(item.sopInstanceUid, { orthancId: item.orthancId, sopClassUid: item.sopClassUid, ...(item.parentSeries ? { parentSeries: item.parentSeries } : {}) });
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
      // Orthanc answers `{}`: anything else (an HTML page from a proxy) proves nothing about the file.
      await this.call('POST', `${attachment}/verify-md5`, verifyMd5Answer, { endpoint: 'POST /instances/{id}/attachments/dicom/verify-md5', data: {} });
      return 'ok';
    } catch (error) {
      const status = error instanceof OrthancInvalidAnswerError ? undefined : error instanceof OrthancUnavailableError ? error.status : undefined;
      if (status === 500 || status === 404) return 'corrupt';
      if (status !== 400) throw error;
    }
    try {
      const info = await this.call('GET', `${attachment}/info`, attachmentInfoAnswer, { endpoint: 'GET /instances/{id}/attachments/dicom/info' });
      return info.UncompressedMD5 ? 'corrupt' : 'unverifiable';
    } catch (error) {
      // Gone since the check: not intact. Any other failure is Orthanc's, to be asked again.
      if (!(error instanceof OrthancInvalidAnswerError) && error instanceof OrthancUnavailableError && error.status === 404) return 'corrupt';
      throw error;
    }
  }

  /**
   * The size Orthanc recorded for the instance's file at reception (from its index: the file itself is
   * not looked at), or undefined when Orthanc no longer has the attachment (404).
   */
  private async recordedSize(orthancId: string): Promise<number | undefined> {
    try {
      const info = await this.call('GET', `/instances/${encodeURIComponent(orthancId)}/attachments/dicom/info`, attachmentSizeAnswer, { endpoint: 'GET /instances/{id}/attachments/dicom/info' });
      return info.UncompressedSize;
    } catch (error) {
      if (!(error instanceof OrthancInvalidAnswerError) && error instanceof OrthancUnavailableError && error.status === 404) return undefined;
      throw error;
    }
  }

  /**
   * The size policy: does the stored file have the size Orthanc recorded at reception? Orthanc has no
   * REST call that looks at the file without reading it (Orthanc 1.10.1: .../size and .../info answer from
   * its index, Range headers are ignored, HEAD is 404), so we ask for the file (GET
   * .../attachments/dicom/data), which Orthanc reads whole before it answers, compare the Content-Length it
   * announces with the recorded size and close the connection without taking the body (a body of at most
   * SIZE_READS_BODY_UP_TO is read instead, and counted). A missing file is
   * a 500 or 404, a truncated one announces its shorter length: both 'corrupt'. Where Orthanc announces
   * no length (a chunked answer), the body is counted instead.
   */
  async checkStoredSize(orthancId: string): Promise<Integrity> {
    return this.readStoredFile(orthancId, 'announced-length');
  }

  /**
   * The fetch policy: the stored file is read through Orthanc, streamed and counted, never held: 'ok' when
   * exactly the recorded size arrived. A file Orthanc cannot read (deleted, I/O error) is a 500 or 404:
   * 'corrupt', as is a body shorter or longer than recorded. 'unverifiable' when `budget` ran out before or
   * during the read.
   */
  async fetchStoredFile(orthancId: string, budget: ReadBudget): Promise<Integrity> {
    return this.readStoredFile(orthancId, 'whole', budget);
  }

  /**
   * A transfer that breaks off, or an answer that is not a file (a proxy's HTML page), is Orthanc's fault,
   * never evidence about the file: it throws, and the instance is asked about again.
   */
  private async readStoredFile(orthancId: string, mode: 'announced-length' | 'whole', budget?: ReadBudget): Promise<Integrity> {
    const endpoint = 'GET /instances/{id}/attachments/dicom/data';
    const expected = await this.recordedSize(orthancId);
    if (expected === undefined) return 'corrupt';
    if (budget && !budget.open) return 'unverifiable';
    let response;
    try {
      response = await this.http.request<Readable>({
        method: 'GET',
        url: `/instances/${encodeURIComponent(orthancId)}/attachments/dicom/data`,
        responseType: 'stream',
        ...(budget ? { signal: budget.signal } : {}),
        // We count the bytes ourselves, as they arrive, uncompressed on the wire.
        decompress: false,
        headers: { 'Accept-Encoding': 'identity' },
        maxContentLength: -1,
      });
    } catch (error) {
      if (budget?.signal.aborted) return 'unverifiable';
      if (error instanceof AxiosError) (error.response?.data as Readable | undefined)?.destroy?.();
      const converted = toOrthancError(error, endpoint);
      const status = converted instanceof OrthancInvalidAnswerError ? undefined : converted instanceof OrthancUnavailableError ? converted.status : undefined;
      if (status === 500 || status === 404) return 'corrupt';
      throw converted;
    }
    const body = response.data;
    try {
      const contentType = String(response.headers['content-type'] ?? '');
      if (/html|json|text\//i.test(contentType)) {
        const problem = `content-type ${contentType.split(';')[0]}`;
        this.warnInvalid(endpoint, problem);
        throw new OrthancInvalidAnswerError(`Orthanc ${endpoint}: unexpected answer (${problem})`, response.status);
      }
      const announced = Number(response.headers['content-length'] ?? NaN);
      // A small body is cheaper to read than the new connection that closing this one costs.
      if (mode === 'announced-length' && Number.isInteger(announced) && announced >= 0 && (announced !== expected || announced > SIZE_READS_BODY_UP_TO)) return announced === expected ? 'ok' : 'corrupt';
      let read = 0;
      try {
        for await (const chunk of body as AsyncIterable<Buffer>) {
          read += chunk.length;
          if (read > expected) return 'corrupt';
          if (budget && !budget.take(chunk.length)) return 'unverifiable';
        }
      } catch (error) {
        if (budget?.signal.aborted) return 'unverifiable';
        throw new OrthancUnavailableError(`Orthanc ${endpoint}: the transfer broke off after ${read} bytes (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
      }
      return read === expected ? 'ok' : 'corrupt';
    } finally {
      body.destroy();
    }
  }

  /** checkStoredSize over many instances with the client's concurrency. */
  async checkStoredSizeMany(orthancIds: readonly string[]): Promise<Map<string, Integrity>> {
    const results = new Map<string, Integrity>();
    await Promise.all(orthancIds.map((id) => this.limit(async () => results.set(id, await this.checkStoredSize(id)))));
    return results;
  }

  /** fetchStoredFile over many instances with the client's concurrency; once the budget is spent, the rest is 'unverifiable'. */
  async fetchStoredFileMany(orthancIds: readonly string[], budget: ReadBudget): Promise<Map<string, Integrity>> {
    const results = new Map<string, Integrity>();
    await Promise.all(orthancIds.map((id) => this.limit(async () => results.set(id, budget.open ? await this.fetchStoredFile(id, budget) : 'unverifiable'))));
    return results;
  }

  /** Runs verifyMd5 over many instances with the client's concurrency. */
  async verifyMd5Many(orthancIds: readonly string[]): Promise<Map<string, Integrity>> {
    const results = new Map<string, Integrity>();
    await Promise.all(orthancIds.map((id) => this.limit(async () => results.set(id, await this.verifyMd5(id)))));
    return results;
  }

  /**
   * Series by Orthanc ID with their parent study and their instances' IDs (Orthanc leaves out series it
   * does not hold). One /tools/bulk-content per SERIES_CHUNK series, with the client's concurrency.
   */
  async seriesContent(seriesIds: readonly string[]): Promise<SeriesContent[]> {
    const chunks: string[][] = [];
    for (let i = 0; i < seriesIds.length; i += SERIES_CHUNK) chunks.push(seriesIds.slice(i, i + SERIES_CHUNK) as string[]);
    const answers = await Promise.all(
      chunks.map((chunk) =>
        this.limit(() => this.call('POST', '/tools/bulk-content', seriesContentAnswer, { endpoint: 'POST /tools/bulk-content (Series)', data: { Resources: chunk, Level: 'Series', Metadata: false } })),
      ),
    );
    return answers.flat().map((s) => ({ orthancId: s.ID, parentStudy: s.ParentStudy, instances: s.Instances }));
  }

  /** Study ID -> patient ID, for the studies Orthanc holds (one /tools/bulk-content per BULK_CHUNK). */
  async studyPatients(studyIds: readonly string[]): Promise<Map<string, string>> {
    const chunks: string[][] = [];
    for (let i = 0; i < studyIds.length; i += BULK_CHUNK) chunks.push(studyIds.slice(i, i + BULK_CHUNK) as string[]);
    const answers = await Promise.all(
      chunks.map((chunk) =>
        this.limit(() => this.call('POST', '/tools/bulk-content', studyParentAnswer, { endpoint: 'POST /tools/bulk-content (Study)', data: { Resources: chunk, Level: 'Study', Metadata: false } })),
      ),
    );
    return new Map(answers.flat().map((s) => [s.ID, s.ParentPatient]));
  }

  /** Orthanc's patient protection: recycling (MaximumStorageSize, MaximumPatientCount) never removes them. */
  async protectPatients(patientIds: readonly string[]): Promise<void> {
    await Promise.all(
      patientIds.map((id) =>
        this.limit(() => this.call('PUT', `/patients/${encodeURIComponent(id)}/protected`, emptyAnswer, { endpoint: 'PUT /patients/{id}/protected', data: '1' })),
      ),
    );
  }

  /** The newest change sequence number, to start watching the changes feed from now. */
  async lastChangeSeq(): Promise<number> {
    const answer = await this.call('GET', '/changes?last', lastChangeAnswer);
    return answer.Last;
  }

  async changes(since: number, limit = CHANGES_PAGE): Promise<{ changes: Change[]; last: number; done: boolean }> {
    const answer = await this.call('GET', `/changes?since=${since}&limit=${limit}`, changesAnswer, { endpoint: 'GET /changes' });
    return {
      changes: answer.Changes.map((c) => ({ seq: c.Seq, changeType: c.ChangeType, resourceId: c.ID })),
      last: answer.Last,
      done: answer.Done,
    };
  }
}

function toOrthancError(error: unknown, endpoint: string): Error {
  if (error instanceof AxiosError) {
    const status = error.response?.status;
    // axios refuses an answer past maxContentLength with this message (no code of its own).
    if (/maxContentLength/.test(error.message)) return new OrthancInvalidAnswerError(`Orthanc ${endpoint}: unexpected answer (longer than we accept)`, status);
    // A timeout says how long we waited ("timeout of 2000ms exceeded"); other failures by their code.
    const detail = status ? `HTTP ${status}` : error.code === 'ECONNABORTED' ? error.message : (error.code ?? error.message);
    if (status === 401 || status === 403) return new Error(`Orthanc refused our credentials (${endpoint}: ${detail})`);
    return new OrthancUnavailableError(`Orthanc ${endpoint}: ${detail}`, status);
  }
  return error instanceof Error ? error : new Error(String(error));
}
