// Versions of the external tools, asked once (argv, never a shell); null when not installed.
import { execFile } from 'node:child_process';

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
    // The whole first line, as the Python proxy reports it (`ffmpeg version 5.1.6-… Copyright …`).
    ffmpeg,
    streamlink: streamlink?.replace(/^streamlink\s+/i, '') ?? null,
    ytdlp,
  };
}
