/**
 * docs/openapi.yaml against the code: every query parameter a route parses is described, with its allowed
 * values, and nothing is described that the route does not take. The routes parse with QUERY_SCHEMAS.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { load } from 'js-yaml';
import type { z } from 'zod';
import { QUERY_SCHEMAS } from '../../src/http/app.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

interface Parameter {
  readonly name: string;
  readonly in: string;
  readonly schema?: { readonly enum?: readonly string[]; readonly $ref?: string };
}
interface Operation {
  readonly parameters?: ReadonlyArray<Parameter | { readonly $ref: string }>;
}
interface OpenApi {
  readonly paths: Record<string, Partial<Record<'get' | 'post', Operation>>>;
  readonly components: { readonly parameters: Record<string, Parameter>; readonly schemas: Record<string, { readonly enum?: readonly string[] }> };
}

const spec = load(readFileSync(join(ROOT, 'docs', 'openapi.yaml'), 'utf8')) as OpenApi;

function resolve<T>(ref: string): T {
  const [, section, name] = /^#\/components\/(\w+)\/(.+)$/.exec(ref) ?? [];
  const found = (spec.components as unknown as Record<string, Record<string, T>>)[section ?? '']?.[name ?? ''];
  assert.ok(found, `unresolved ${ref}`);
  return found;
}

/** The query parameters an operation describes, with their allowed values (undefined: any). */
function describedQuery(operation: Operation | undefined): Map<string, readonly string[] | undefined> {
  const found = new Map<string, readonly string[] | undefined>();
  for (const item of operation?.parameters ?? []) {
    const parameter = '$ref' in item && typeof item.$ref === 'string' ? resolve<Parameter>(item.$ref) : (item as Parameter);
    if (parameter.in !== 'query') continue;
    const schema = parameter.schema?.$ref ? resolve<{ enum?: readonly string[] }>(parameter.schema.$ref) : parameter.schema;
    found.set(parameter.name, schema?.enum);
  }
  return found;
}

/** The query parameters a schema parses, with their allowed values when it is an enum. */
function parsedQuery(schema: z.ZodObject): Map<string, readonly string[] | undefined> {
  const found = new Map<string, readonly string[] | undefined>();
  for (const [name, field] of Object.entries(schema.shape)) {
    let inner: unknown = field;
    // Optional and default wrap the type that says what is allowed.
    while (inner && typeof inner === 'object' && 'unwrap' in inner && typeof inner.unwrap === 'function') inner = (inner.unwrap as () => unknown).call(inner);
    const options = inner && typeof inner === 'object' && 'options' in inner && Array.isArray(inner.options) ? (inner.options as string[]) : undefined;
    found.set(name, options);
  }
  return found;
}

describe('the OpenAPI description matches the routes', () => {
  for (const [path, schema] of Object.entries(QUERY_SCHEMAS)) {
    it(`GET ${path}: the same query parameters, with the same allowed values`, () => {
      const operation = spec.paths[path]?.get;
      assert.ok(operation, `${path} is not described`);
      const described = describedQuery(operation);
      const parsed = parsedQuery(schema);
      assert.deepEqual([...described.keys()].sort(), [...parsed.keys()].sort());
      for (const [name, values] of parsed) assert.deepEqual(described.get(name) ? [...described.get(name)!].sort() : undefined, values ? [...values].sort() : undefined, `${path} ?${name}`);
    });
  }

  it('describes no query parameter for a GET route that takes none', () => {
    for (const [path, item] of Object.entries(spec.paths)) {
      if (path in QUERY_SCHEMAS || !item.get) continue;
      assert.deepEqual([...describedQuery(item.get).keys()], [], path);
    }
  });

  it('the search is described with every term of the issue: instance, study, patient, accession, transaction, from, to, callingAet', () => {
    const described = describedQuery(spec.paths['/api/transactions']?.get);
    for (const name of ['instance', 'study', 'patient', 'accession', 'transaction', 'from', 'to', 'callingAet']) assert.ok(described.has(name), name);
  });
});
