/**
 * Routes whose schemas are written as plain JSON Schema (terminals, files, volumes) are
 * converted to TypeBox when they are registered, so one validator (TypeBox's) checks every
 * route: the same keywords, turned into the same kinds of schema.
 */
import { Kind, type TSchema, Type } from '@sinclair/typebox';

type Plain = Record<string, unknown>;

const isTypeBox = (schema: unknown): boolean => typeof schema === 'object' && schema !== null && Kind in schema;

const OPTIONS = ['description', 'minimum', 'maximum', 'minLength', 'maxLength', 'minItems', 'maxItems', 'pattern', 'default'];
const optionsOf = (schema: Plain): Record<string, unknown> => Object.fromEntries(OPTIONS.filter((k) => k in schema).map((k) => [k, schema[k]]));

/** A TypeBox schema equal to the plain JSON schema `schema` (objects, strings, numbers, booleans, arrays, anyOf). */
export function fromPlain(schema: unknown): TSchema {
  if (isTypeBox(schema)) return schema as TSchema;
  const s = schema as Plain;
  if (Array.isArray(s.anyOf)) return Type.Union((s.anyOf as unknown[]).map(fromPlain), optionsOf(s));
  switch (s.type) {
    case 'object': {
      const required = new Set((s.required as string[] | undefined) ?? []);
      const properties = Object.fromEntries(
        Object.entries((s.properties as Record<string, unknown> | undefined) ?? {}).map(([k, v]) => [k, required.has(k) ? fromPlain(v) : Type.Optional(fromPlain(v))]),
      );
      const additional = s.additionalProperties;
      return Type.Object(properties, {
        ...optionsOf(s),
        ...(additional === false ? { additionalProperties: false } : typeof additional === 'object' ? { additionalProperties: fromPlain(additional) } : {}),
      });
    }
    case 'string':
      return Type.String(optionsOf(s));
    case 'integer':
      return Type.Integer(optionsOf(s));
    case 'number':
      return Type.Number(optionsOf(s));
    case 'boolean':
      return Type.Boolean(optionsOf(s));
    case 'array':
      return Type.Array(fromPlain(s.items ?? {}), optionsOf(s));
    default:
      return Type.Unknown(optionsOf(s));
  }
}

/** Converts the plain parts of a route's schema in place (params, querystring, body, response by status). */
export function convertRouteSchema(schema: Record<string, unknown> | undefined): void {
  if (!schema) return;
  for (const part of ['params', 'querystring', 'body', 'headers']) {
    if (schema[part] !== undefined) schema[part] = fromPlain(schema[part]);
  }
  const response = schema.response as Record<string, unknown> | undefined;
  if (response) for (const status of Object.keys(response)) response[status] = fromPlain(response[status]);
}
