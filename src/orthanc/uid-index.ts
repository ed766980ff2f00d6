/**
 * A local map from SOP Instance UID to Orthanc's instance ID, fed by Orthanc's changes feed as images
 * arrive. It only ever saves a search: a verdict still comes from Orthanc's live answer for that ID
 * (see OrthancClient.lookupInstances), so a stale or missing entry costs time, never correctness.
 * Orthanc 1.10.1 does not log deletions in /changes; deleted instances are found stale at lookup.
 * Kept in its own SQLite file without fsync: losing it loses nothing but speed.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';

/** UIDs per lookup query. */
const CHUNK = 20000;

export class UidIndex {
  private readonly db: Database.Database;
  private readonly upsert: Database.Statement;
  private readonly lookup: Database.Statement;

  private constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = OFF');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS instance_ids (sop_instance_uid TEXT PRIMARY KEY, orthanc_id TEXT NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS feed_position (id INTEGER PRIMARY KEY CHECK (id = 1), orthanc_url TEXT NOT NULL, last_seq INTEGER NOT NULL);
    `);
    this.lookup = this.db.prepare('SELECT sop_instance_uid, orthanc_id FROM instance_ids WHERE sop_instance_uid IN (SELECT value FROM json_each(?))');
    this.upsert = this.db.prepare('INSERT INTO instance_ids (sop_instance_uid, orthanc_id) VALUES (?, ?) ON CONFLICT (sop_instance_uid) DO UPDATE SET orthanc_id = excluded.orthanc_id');
  }

  static open(dataDir: string): UidIndex {
    mkdirSync(dataDir, { recursive: true });
    return new UidIndex(join(dataDir, 'orthanc-uid-index.sqlite'));
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  /** Orthanc IDs recorded for these UIDs (those we know). One prepared statement, UIDs as a JSON array. */
  find(sopInstanceUids: readonly string[]): Map<string, string> {
    const found = new Map<string, string>();
    for (let i = 0; i < sopInstanceUids.length; i += CHUNK) {
      const rows = this.lookup.raw().all(JSON.stringify(sopInstanceUids.slice(i, i + CHUNK))) as Array<[string, string]>;
      for (const [uid, id] of rows) found.set(uid, id);
    }
    return found;
  }

  record(entries: ReadonlyArray<{ sopInstanceUid: string; orthancId: string }>): void {
    this.db.transaction(() => {
      for (const e of entries) this.upsert.run(e.sopInstanceUid, e.orthancId);
    })();
  }

  forget(sopInstanceUids: readonly string[]): void {
    const remove = this.db.prepare('DELETE FROM instance_ids WHERE sop_instance_uid = ?');
    this.db.transaction(() => {
      for (const uid of sopInstanceUids) remove.run(uid);
    })();
  }

  /** Where we are in this Orthanc's changes feed (a different ORTHANC_URL starts over). */
  feedPosition(orthancUrl: string): number | undefined {
    const row = this.db.prepare('SELECT orthanc_url, last_seq FROM feed_position WHERE id = 1').get() as { orthanc_url: string; last_seq: number } | undefined;
    return row && row.orthanc_url === orthancUrl ? row.last_seq : undefined;
  }

  setFeedPosition(orthancUrl: string, lastSeq: number): void {
    this.db.prepare('INSERT INTO feed_position (id, orthanc_url, last_seq) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET orthanc_url = excluded.orthanc_url, last_seq = excluded.last_seq').run(orthancUrl, lastSeq);
  }

  get size(): number {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM instance_ids').get() as { n: number }).n;
  }
}
