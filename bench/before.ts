// `--before <rev>`: the proxy as it was at an earlier commit, built in a detached git worktree
// of its own, so the bench measures before and after in one run beside the same floor (the
// only way a "before" figure on a shared box is comparable: same minute, same load).
// `--after <rev>` builds a second commit the same way and measures it in place of this
// checkout, so one change can be isolated (e.g. --before X^ --after X).
import { execFile } from 'node:child_process';
import { existsSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface BeforeTree {
  /** The worktree's root (run `node dist/src/index.js` there). */
  root: string;
  /** The short commit id that was built. */
  commit: string;
  remove(): Promise<void>;
}

/**
 * Checks `rev` out into `<tmp>/before` and compiles it with this checkout's TypeScript and
 * node_modules (a symlink: the old commit's dependencies are a subset of today's, or its
 * build fails here and says so).
 * Errors: an unknown rev or a failed build throw with git's or tsc's output.
 */
export async function buildBefore(repoRoot: string, tmp: string, rev: string, name = 'before'): Promise<BeforeTree> {
  const root = path.join(tmp, name);
  const git = (args: string[], cwd = repoRoot) => execFileAsync('git', args, { cwd, timeout: 60_000 });
  const commit = (await git(['rev-parse', '--short', `${rev}^{commit}`])).stdout.trim();
  await git(['worktree', 'add', '--detach', '--force', root, commit]);
  const remove = async (): Promise<void> => {
    await git(['worktree', 'remove', '--force', root]).catch(() => undefined);
  };
  try {
    if (!existsSync(path.join(root, 'node_modules'))) symlinkSync(path.join(repoRoot, 'node_modules'), path.join(root, 'node_modules'), 'dir');
    await execFileAsync(process.execPath, [path.join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: root, timeout: 300_000 });
  } catch (err) {
    await remove();
    const e = err as { stdout?: string; message: string };
    throw new Error(`--${name} ${rev}: build failed: ${(e.stdout ?? e.message).slice(0, 2000)}`);
  }
  return { root, commit, remove };
}
