// Versions of the external tools, asked once (argv, never a shell); null when not installed.
// streamlink and yt-dlp are Python programs: their start can take seconds on a loaded box.
import { execFile } from 'node:child_process';

export interface ToolVersions {
  ffmpeg: string | null;
  streamlink: string | null;
  ytdlp: string | null;
}

function firstLine(cmd: string, args: string[]): Promise<string | null> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 30_000 }, (err, stdout) => {
      resolve(err ? null : (stdout.split('\n')[0]?.trim() || null));
    });
  });
}

/** The binaries to ask (names on PATH or full paths). */
export interface ToolPaths {
  ffmpegPath: string;
  streamlinkPath: string;
  ytdlpPath: string;
}

export async function detectToolVersions(paths: ToolPaths): Promise<ToolVersions> {
  const [ffmpeg, streamlink, ytdlp] = await Promise.all([
    firstLine(paths.ffmpegPath, ['-hide_banner', '-version']),
    firstLine(paths.streamlinkPath, ['--version']),
    firstLine(paths.ytdlpPath, ['--version']),
  ]);
  return {
    // The whole first line, as the Python proxy reports it (`ffmpeg version 5.1.6-… Copyright …`).
    ffmpeg,
    streamlink: streamlink?.replace(/^streamlink\s+/i, '') ?? null,
    ytdlp,
  };
}
