// Versions of the external tools, asked once (argv, never a shell); null when not installed.
import { execFile } from 'node:child_process';
import { parseFfmpegVersion } from './ffmpeg-process.js';

export interface ToolVersions {
  ffmpeg: string | null;
  streamlink: string | null;
  ytdlp: string | null;
}

function firstLine(cmd: string, args: string[]): Promise<string | null> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 5000 }, (err, stdout) => {
      resolve(err ? null : (stdout.split('\n')[0]?.trim() || null));
    });
  });
}

export async function detectToolVersions(ffmpegPath: string): Promise<ToolVersions> {
  const [ffmpeg, streamlink, ytdlp] = await Promise.all([
    firstLine(ffmpegPath, ['-hide_banner', '-version']),
    firstLine('streamlink', ['--version']),
    firstLine('yt-dlp', ['--version']),
  ]);
  return {
    ffmpeg: ffmpeg ? (parseFfmpegVersion(ffmpeg) ?? ffmpeg) : null,
    streamlink: streamlink?.replace(/^streamlink\s+/i, '') ?? null,
    ytdlp,
  };
}
