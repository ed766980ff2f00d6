/**
 * Where the SCU command gets its instance list: DICOM files, a UID list file, or a study in an Orthanc.
 */
import { readFile } from 'node:fs/promises';
import axios from 'axios';
import { isValidUid } from '../commitment/request.js';
import type { SopReference } from '../commitment/types.js';
import { Dataset } from '../dicom/dimse.js';

/** SOP Class and Instance UIDs of DICOM Part 10 files. */
export function referencesFromFiles(paths: readonly string[]): SopReference[] {
  return paths.map((path) => {
    const dataset = Dataset.fromFile(path);
    const sopClassUid = String(dataset?.getElement('SOPClassUID') ?? '');
    const sopInstanceUid = String(dataset?.getElement('SOPInstanceUID') ?? '');
    if (!isValidUid(sopClassUid) || !isValidUid(sopInstanceUid)) throw new Error(`${path}: no SOP Class/Instance UID`);
    return { sopClassUid, sopInstanceUid };
  });
}

/** One instance a line: "<SOP Class UID> <SOP Instance UID>" (space, tab or comma separated; # comments). */
export async function referencesFromUidList(path: string): Promise<SopReference[]> {
  const lines = (await readFile(path, 'utf8')).split(/\r?\n/);
  const references: SopReference[] = [];
  lines.forEach((raw, index) => {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) return;
    const [sopClassUid, sopInstanceUid, extra] = line.split(/[\s,]+/);
    if (!sopClassUid || !sopInstanceUid || extra !== undefined || !isValidUid(sopClassUid) || !isValidUid(sopInstanceUid)) {
      throw new Error(`${path}:${index + 1}: expected "<SOP Class UID> <SOP Instance UID>"`);
    }
    references.push({ sopClassUid, sopInstanceUid });
  });
  return references;
}

/** Every instance of a study stored in an Orthanc, with its SOP Class from Orthanc's metadata. */
export async function referencesFromOrthancStudy(baseUrl: string, studyInstanceUid: string, auth?: { username: string; password: string }): Promise<SopReference[]> {
  const http = axios.create({ baseURL: baseUrl.replace(/\/+$/, ''), timeout: 60_000, auth, maxContentLength: Infinity });
  const { data: studies } = await http.post<string[]>('/tools/find', { Level: 'Study', Query: { StudyInstanceUID: studyInstanceUid } });
  if (studies.length === 0) throw new Error(`study ${studyInstanceUid} is not in ${baseUrl}`);
  const { data: instances } = await http.get<Array<{ ID: string }>>(`/studies/${studies[0]}/instances`);
  const { data: contents } = await http.post<Array<{ MainDicomTags?: { SOPInstanceUID?: string }; Metadata?: { SopClassUid?: string } }>>('/tools/bulk-content', {
    Resources: instances.map((i) => i.ID),
    Level: 'Instance',
    Metadata: true,
  });
  return contents.map((c) => {
    const sopInstanceUid = c.MainDicomTags?.SOPInstanceUID;
    const sopClassUid = c.Metadata?.SopClassUid;
    if (!sopInstanceUid || !sopClassUid) throw new Error('Orthanc returned an instance without SOP Instance UID or SOP Class');
    return { sopClassUid, sopInstanceUid };
  });
}
