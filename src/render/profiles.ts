// FFmpeg profiles: named templates with default variables, one YAML/JSON file each. A broken
// file is reported and skipped so one typo does not take every profile down.
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { placeholders, VAR_NAME_RE } from './template.js';

export type OutputFormat = 'mpegts' | 'hls';

export interface Profile {
  name: string;
  description: string;
  template: string;
  /** Defaults; a request's variables win over them. */
  variables: Record<string, string>;
  outputFormat: OutputFormat;
  /** Absolute path of the file it came from. */
  file: string;
}

export interface LoadedProfiles {
  profiles: Profile[];
  /** One sentence per skipped file (or unreadable directory). */
  problems: string[];
}

export const PROFILE_NAME_RE = /^[a-z0-9_-]+$/;
const EXTENSIONS = new Set(['.yaml', '.yml', '.json']);
const OUTPUT_FORMATS: readonly OutputFormat[] = ['mpegts', 'hls'];

/** Validate one parsed document; returns the profile or throws an Error with the reason. */
export function profileFromDocument(doc: unknown, file: string): Profile {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new Error('the file is not a mapping (expected name, description, template, variables)');
  }
  const d = doc as Record<string, unknown>;
  const name = d.name ?? path.basename(file, path.extname(file));
  if (typeof name !== 'string' || !PROFILE_NAME_RE.test(name)) {
    throw new Error(`name ${JSON.stringify(name)} must match [a-z0-9_-]+`);
  }
  const description = d.description ?? '';
  if (typeof description !== 'string') throw new Error('description must be a string');
  const template = d.template;
  if (typeof template !== 'string' || template.trim() === '') {
    throw new Error('template must be a non-empty string');
  }
  const outputFormat = d.output_format ?? 'mpegts';
  if (typeof outputFormat !== 'string' || !OUTPUT_FORMATS.includes(outputFormat as OutputFormat)) {
    throw new Error(`output_format must be one of ${OUTPUT_FORMATS.join(', ')}`);
  }
  const variables: Record<string, string> = {};
  const rawVars = d.variables ?? {};
  if (rawVars === null || typeof rawVars !== 'object' || Array.isArray(rawVars)) {
    throw new Error('variables must be a mapping of name to string');
  }
  for (const [k, v] of Object.entries(rawVars)) {
    if (!VAR_NAME_RE.test(k)) throw new Error(`variable name "${k}" is not a valid identifier`);
    // YAML reads `crf: 23` as a number; accept scalars and keep their text.
    if (typeof v === 'string') variables[k] = v;
    else if (typeof v === 'number' || typeof v === 'boolean') variables[k] = String(v);
    else throw new Error(`variable "${k}" must be a string`);
  }
  const names = placeholders(template).map((p) => p.name); // throws on malformed braces
  const inputs = names.filter((n) => n === 'input_url').length;
  if (inputs !== 1) throw new Error(`template must use {input_url} exactly once (found ${inputs})`);
  return { name, description, template, variables, outputFormat: outputFormat as OutputFormat, file };
}

/** Read every *.yaml / *.yml / *.json in `dir` (sorted by file name; first of a name wins). */
export async function loadProfiles(dir: string): Promise<LoadedProfiles> {
  const problems: string[] = [];
  const profiles: Profile[] = [];
  let entries: string[];
  try {
    entries = (await readdir(dir, { withFileTypes: true }))
      .filter((e) => e.isFile() && EXTENSIONS.has(path.extname(e.name).toLowerCase()))
      .map((e) => e.name)
      .sort();
  } catch (err) {
    return { profiles, problems: [`Profiles directory ${dir} cannot be read: ${(err as Error).message}`] };
  }
  const seen = new Map<string, string>();
  for (const entry of entries) {
    const file = path.resolve(dir, entry);
    try {
      const text = await readFile(file, 'utf8');
      const doc: unknown = path.extname(entry).toLowerCase() === '.json' ? JSON.parse(text) : parseYaml(text);
      const profile = profileFromDocument(doc, file);
      const first = seen.get(profile.name);
      if (first) throw new Error(`profile name "${profile.name}" is already used by ${first}`);
      seen.set(profile.name, entry);
      profiles.push(profile);
    } catch (err) {
      problems.push(`Profile file ${entry} skipped: ${(err as Error).message}`);
    }
  }
  return { profiles, problems };
}
