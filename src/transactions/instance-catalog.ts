/**
 * What the PACS holds: the seam where a PACS plugs in, modelled on Orthanc's own lookup handler idea (a
 * SOP Instance UID in, what is stored under it out). Orthanc's REST API is the one implementation today
 * (orthanc/catalog.ts); the verifier and the committed-instance watch know only this.
 */

/** One stored instance: the SOP Class the PACS holds it under, and the PACS's own id for it. */
export interface CatalogEntry {
  /** The PACS's id of the instance (Orthanc's instance ID): what verification policies read files by. */
  readonly id: string;
  readonly sopClassUid: string;
}

export interface InstanceCatalog {
  /**
   * What the PACS holds for these SOP Instance UIDs; a UID it does not hold is absent from the answer.
   * Throws when the PACS cannot be asked or answers nonsense: nothing may be judged absent on a failure.
   */
  find(sopInstanceUids: readonly string[]): Promise<Map<string, CatalogEntry>>;
  /** Brings what the catalog caches up to date before a verification round (bounded; never throws). */
  prepare?(): Promise<void>;
}
