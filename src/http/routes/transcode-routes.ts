// Transcodes (API.md §3.3): a profile or raw template rendered to an argv in the render
// threads; FFmpeg starts with the first viewer, shared by pool key (or one per viewer).
import { Router } from 'express';
import { redactUrl } from '../../redact.js';
import { z } from 'zod';
import { transcodeStreamId, type TranscodeSpec } from '../../streams/stream-definition.js';
import type { StreamService } from '../../streams/stream-service.js';
import type { Transcoder } from '../../streams/transcode/transcoder.js';
import { createStreamSchema, parseBody } from '../schemas.js';
import { toStreamInput } from './streams-routes.js';
import type { ToolVersions } from '../../ffmpeg/tool-versions.js';

export interface TranscodeRoutesDeps {
  service: StreamService;
  versions: () => Promise<ToolVersions>;
  transcoder: Transcoder;
  defaultUserAgent: string;
}

export const transcodeSchema = createStreamSchema.extend({
  profile: z.string().trim().min(1).max(8192).default('default'),
  profile_variables: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).nullish(),
  output_format: z.string().max(32).nullish(),
  cookies: z.string().nullish(),
});

export function transcodeRoutes(deps: TranscodeRoutesDeps): Router {
  const r = Router();

  r.post('/transcode', async (req, res) => {
    const body = parseBody(transcodeSchema, req.body);
    const variables = Object.fromEntries(Object.entries(body.profile_variables ?? {}).map(([k, v]) => [k, String(v)]));
    const isTemplate = body.profile.startsWith('-');
    const rendered = await deps.transcoder.render({ profile: body.profile, variables, inputUrl: body.url });
    const spec: TranscodeSpec = {
      profile: isTemplate ? null : body.profile,
      template: isTemplate ? body.profile : null,
      variables,
      argv: rendered.argv,
      outputFormat: rendered.outputFormat,
    };
    const input = await toStreamInput(body, deps.versions);
    const profileLabel = spec.profile ?? 'custom';
    input.metadata = {
      ...input.metadata,
      transcoding: 'true',
      profile: profileLabel,
      profile_variables: JSON.stringify(variables),
      // Not the URL field: the input URL's credentials stay out (src/redact.ts).
      ffmpeg_args: JSON.stringify(rendered.argv.map(redactUrl)),
    };
    const id = transcodeStreamId(body.url, spec, isTemplate || Object.keys(variables).length > 0);
    const def = await deps.service.upsert(input, { id, spec });
    const hls = rendered.outputFormat === 'hls';
    const playlist = `/hls/${def.id}/playlist.m3u8`;
    res.json({
      stream_id: def.id,
      primary_url: def.url,
      failover_urls: def.failoverUrls,
      user_agent: def.userAgent ?? deps.defaultUserAgent,
      stream_type: 'transcoded',
      stream_endpoint: hls ? playlist : `/stream/${def.id}`,
      playlist_url: hls ? playlist : null,
      direct_url: `/stream/${def.id}`,
      format: rendered.outputFormat,
      profile: profileLabel,
      profile_variables: variables,
      ffmpeg_args: rendered.argv.map(redactUrl),
      message: 'Transcoded stream created successfully',
      metadata: def.metadata,
    });
  });

  r.get('/transcode/profiles', async (_req, res) => {
    const [hw, profiles] = await Promise.all([deps.transcoder.hardware(), deps.transcoder.profiles()]);
    res.json({
      profiles: profiles.map((p) => ({
        name: p.name,
        description: p.description,
        parameters: p.template,
        output_format: p.outputFormat,
        variables: p.variables,
      })),
      hardware_acceleration: { available: hw.type !== 'cpu', type: hw.type, device: hw.device },
      default_variables: { HW: hw.HW, ENC264: hw.ENC264, ENC265: hw.ENC265, PRESET: hw.PRESET, HWUPLOAD: hw.HWUPLOAD },
    });
  });

  return r;
}
